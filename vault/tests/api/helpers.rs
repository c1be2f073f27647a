//! An in-process vault on a real socket and a real SQLite file, with its logs captured.

use std::path::PathBuf;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use shared::Pan;
use tempfile::TempDir;
use tokio::sync::oneshot;
use vault::audit::{BrokenLink, Verifier};
use vault::auth::Scopes;
use vault::config::VaultConfig;
use vault::crypto::FileKeyProvider;
use vault::service::Vault;
use vault::startup::{Application, open_vault};
use vault::token::ClientId;

pub(crate) use testkit::logs::logs;

/// Raises every rate limit out of the way, for tests that load the vault on purpose.
pub(crate) fn unlimited(config: &mut VaultConfig) {
    let l = &mut config.limits;
    for (rate, burst) in [
        (&mut l.tokenize_per_second, &mut l.tokenize_burst),
        (&mut l.read_per_second, &mut l.read_burst),
        (&mut l.detokenize_per_second, &mut l.detokenize_burst),
        (
            &mut l.collect_submit_per_second,
            &mut l.collect_submit_burst,
        ),
        (&mut l.collect_page_per_second, &mut l.collect_page_burst),
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
    /// The card form's own listener, when `collect.listen` is set.
    pub(crate) form_base: Option<String>,
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

    /// A vault with one client of `acme` holding every scope and a token it made for `pan`:
    /// `(vault, the client's key, the token)`, where most tests start.
    pub(crate) async fn with_token(pan: &str) -> (Self, String, String) {
        let v = Self::spawn().await;
        let key = v.client("acme", ALL_SCOPES).await;
        let token = v.token_for(&key, pan).await;
        (v, key, token)
    }

    /// A vault with a client holding every scope in each of two tenants: `(vault, acme's key,
    /// globex's key)`, for what one tenant may not see of the other's.
    pub(crate) async fn with_two_tenants() -> (Self, String, String) {
        let v = Self::spawn().await;
        let acme = v.client("acme", ALL_SCOPES).await;
        let globex = v.client("globex", ALL_SCOPES).await;
        (v, acme, globex)
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
        let form_base = app.form_addr().unwrap().map(|a| format!("http://{a}"));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        let admin = open_vault(&config).await.unwrap();
        Self {
            base: format!("http://{addr}"),
            form_base,
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
        self.client_with_id(tenant, scopes).await.1
    }

    /// Creates a client and returns its id (to revoke it, or find it in the audit log) and its
    /// API key.
    pub(crate) async fn client_with_id(&self, tenant: &str, scopes: &str) -> (ClientId, String) {
        let (record, key) = self
            .admin
            .create_client("test-client", tenant, Scopes::parse(scopes).unwrap())
            .await
            .unwrap();
        (record.id, key.expose().to_owned())
    }

    /// The audit chain as `audit verify` sees it (no checkpoints, no expected head).
    pub(crate) async fn verify_audit(&self) -> Result<Verifier, BrokenLink> {
        self.admin.verify_audit(&Default::default()).await.unwrap()
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
        self.tokenize_body(key, &format!(r#"{{"pan":"{pan}"}}"#))
            .await
    }

    /// `POST /v1/tokens` with exactly `body`.
    pub(crate) async fn tokenize_body(&self, key: &str, body: &str) -> Reply {
        self.call(Method::POST, "/v1/tokens", Some(key), Some(body))
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

    /// `GET /v1/tokens/{token}`: the card's metadata.
    pub(crate) async fn read(&self, key: &str, token: &str) -> Reply {
        let path = format!("/v1/tokens/{token}");
        self.call(Method::GET, &path, Some(key), None).await
    }

    /// `DELETE /v1/tokens/{token}`.
    pub(crate) async fn delete(&self, key: &str, token: &str) -> Reply {
        let path = format!("/v1/tokens/{token}");
        self.call(Method::DELETE, &path, Some(key), None).await
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

    /// The one value `sql` selects, read straight from the database (a count, a column).
    pub(crate) fn scalar<T: rusqlite::types::FromSql>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> T {
        self.raw_db()
            .query_row(sql, params, |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Makes the database refuse every audit event from now on, as a full audit disk would,
    /// until [`Self::restore_audit_writes`].
    pub(crate) fn fail_audit_writes(&self) {
        self.raw_db()
            .execute_batch(
                "CREATE TRIGGER audit_down BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'audit disk full'); END;",
            )
            .unwrap();
    }

    /// Asserts that no byte of the stopped vault's database files (the file, its WAL and its
    /// shared memory) holds any of `pans` in any encoding the scanner knows: card numbers are
    /// only ever written encrypted. Call after [`Self::stop`], so nothing is written meanwhile.
    pub(crate) fn assert_database_holds_no_pan(&self, pans: &[&str]) {
        assert!(
            self.server.is_none(),
            "stop the vault before scanning its files"
        );
        let db = self.config.database.path.clone().unwrap();
        let mut scanned = 0;
        for suffix in ["", "-wal", "-shm"] {
            let mut name = db.clone().into_os_string();
            name.push(suffix);
            if let Ok(bytes) = std::fs::read(&name) {
                assert_no_pan(
                    &bytes,
                    pans,
                    &format!("{}", std::path::Path::new(&name).display()),
                );
                scanned += bytes.len();
            }
        }
        assert!(scanned > 0, "no database file to scan at {}", db.display());
    }

    /// Ends what [`Self::fail_audit_writes`] started.
    pub(crate) fn restore_audit_writes(&self) {
        self.raw_db()
            .execute_batch("DROP TRIGGER audit_down;")
            .unwrap();
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
