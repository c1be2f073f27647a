//! Collect sessions over HTTP: the platform opens one, the form's page is served with its
//! guards, a card goes in once, and everything an attacker would try (a wrong secret, another
//! origin, a second card, a forged row, a flood, another tenant) fails cleanly and is audited.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{ALL_SCOPES, Reply, TestVault, assert_no_pan, logs, unlimited};

const PAN: &str = "4242424242424242";
const SHOP: &str = "https://shop.example";
const SCOPES: &str = "collect:create,tokens:read";

impl TestVault {
    /// `POST /v1/collect_sessions` with exactly `body`.
    async fn open_session(&self, key: &str, body: &Value) -> Reply {
        self.call(
            Method::POST,
            "/v1/collect_sessions",
            Some(key),
            Some(&body.to_string()),
        )
        .await
    }

    /// Opens a session framed by [`SHOP`]: `(id, client secret)`.
    async fn session(&self, key: &str) -> (String, String) {
        let reply = self
            .open_session(key, &json!({"allowed_origins": [SHOP]}))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
        let body = reply.json();
        (
            body["id"].as_str().unwrap().to_owned(),
            body["client_secret"].as_str().unwrap().to_owned(),
        )
    }

    /// `POST /collect/{id}/submit` as the form sends it, from the vault's own origin unless
    /// `origin` says otherwise.
    async fn submit_from(&self, id: &str, body: &Value, origin: Option<&str>) -> Reply {
        let mut req = self
            .http
            .post(format!("{}/collect/{id}/submit", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        let resp = req.send().await.unwrap();
        Reply {
            status: resp.status(),
            headers: resp.headers().clone(),
            body: resp.bytes().await.unwrap().to_vec(),
        }
    }

    async fn submit(&self, id: &str, body: &Value) -> Reply {
        let origin = self.base.clone();
        self.submit_from(id, body, Some(&origin)).await
    }

    async fn session_state(&self, key: &str, id: &str) -> Reply {
        self.call(
            Method::GET,
            &format!("/v1/collect_sessions/{id}"),
            Some(key),
            None,
        )
        .await
    }

    async fn page(&self, id: &str, language: Option<&str>) -> Reply {
        let mut req = self.http.get(format!("{}/collect/{id}", self.base));
        if let Some(language) = language {
            req = req.header("accept-language", language);
        }
        let resp = req.send().await.unwrap();
        Reply {
            status: resp.status(),
            headers: resp.headers().clone(),
            body: resp.bytes().await.unwrap().to_vec(),
        }
    }
}

fn card(secret: &str) -> Value {
    json!({
        "client_secret": secret,
        "pan": PAN,
        "exp_month": 12,
        "exp_year": 2099,
        "parent_origin": SHOP,
    })
}

#[tokio::test]
async fn a_session_takes_one_card_and_the_platform_reads_its_token() {
    let v = TestVault::spawn().await;
    let key = v.client("acme", SCOPES).await;
    let reply = v
        .open_session(
            &key,
            &json!({"allowed_origins": [SHOP], "metadata": {"order": "A-1"}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let created = reply.json();
    let id = created["id"].as_str().unwrap();
    let secret = created["client_secret"].as_str().unwrap();
    assert!(id.starts_with("cs_"), "{created}");
    assert!(secret.starts_with("css_"), "{created}");
    assert_eq!(created["url"], format!("{}/collect/{id}", v.base));
    assert_eq!(created["state"], "open");
    assert_eq!(created["allowed_origins"], json!([SHOP]));
    assert_eq!(created["metadata"], json!({"order": "A-1"}));
    // Polling an open session names no card and writes no audit row.
    for _ in 0..3 {
        assert_eq!(v.session_state(&key, id).await.json()["state"], "open");
    }
    assert!(v.events("collect.read").is_empty());

    let done = v.submit(id, &card(secret)).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text());
    let done = done.json();
    let token = done["token"].as_str().unwrap();
    assert_eq!(done["card"], json!({"last4": "4242", "brand": "visa"}));

    let read = v.session_state(&key, id).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text());
    let session = read.json();
    assert_eq!(session["state"], "completed");
    assert_eq!(session["token"], token);
    assert_eq!(session["card"], json!({"last4": "4242", "brand": "visa"}));
    assert!(session.get("client_secret").is_none(), "{session}");
    assert!(!read.text().contains("424242"), "no BIN: {}", read.text());
    // The token is the tenant's like any other.
    let meta = v.read(&key, token).await;
    assert_eq!(meta.status, StatusCode::OK, "{}", meta.text());
    assert_eq!(meta.json()["card"]["last4"], "4242");

    let again = v.submit(id, &card(secret)).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text());
    assert_eq!(again.code(), "session_completed");
    let submits = v.events("collect.submit");
    assert_eq!(submits.len(), 2, "{submits:?}");
    assert_eq!(submits[0].0, "granted");
    assert_eq!(submits[0].1, id, "the session is the actor");
    assert_eq!(submits[1].0, "denied");
    assert_eq!(submits[1].2.as_deref(), Some("session already completed"));
    assert_eq!(v.events("collect.create").len(), 1);
    // The read that named the token is audited.
    let reads = v.events("collect.read");
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert_eq!(reads[0].0, "granted");
    assert!(v.verify_audit().await.is_ok());
    assert_no_pan(&logs(), &[PAN], "the vault's log");
}

#[tokio::test]
async fn the_form_page_is_ours_alone() {
    let v = TestVault::spawn().await;
    let key = v.client("acme", SCOPES).await;
    let (id, secret) = v.session(&key).await;
    let page = v.page(&id, None).await;
    assert_eq!(page.status, StatusCode::OK);
    let header = |name: &str| {
        page.headers
            .get(name)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(header("content-type").starts_with("text/html"));
    // The whole policy, word for word: a directive added or loosened fails here.
    assert_eq!(
        header("content-security-policy"),
        format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors {SHOP}"
        )
    );
    assert!(page.headers.get("x-frame-options").is_none());
    assert_eq!(header("cross-origin-opener-policy"), "same-origin");
    assert_eq!(header("cache-control"), "no-store");
    assert_eq!(header("referrer-policy"), "no-referrer");
    assert_eq!(header("x-content-type-options"), "nosniff");
    let html = page.text();
    assert!(html.contains(&id), "the page names its session");
    assert!(!html.contains(&secret), "the page never holds the secret");
    assert!(!html.contains("{{"), "every placeholder is filled");
    assert!(html.contains("lang=\"en\""));
    // No inline script or handler: every script has a src of our own.
    for script in html.split("<script").skip(1) {
        let tag = script.split('>').next().unwrap_or_default();
        assert!(
            tag.contains("src=\"/collect/assets/"),
            "inline script: {tag}"
        );
    }
    assert!(!html.contains(" onclick=") && !html.contains(" onload="));
    assert!(
        !html.contains("cvv") && !html.contains("cvc"),
        "no CVV field"
    );
    assert!(
        v.page(&id, Some("ru-RU,ru;q=0.9"))
            .await
            .text()
            .contains("lang=\"ru\"")
    );

    for (path, kind) in [
        ("/collect/assets/page.js", "text/javascript"),
        ("/collect/assets/page.css", "text/css"),
        ("/collect.js", "text/javascript"),
    ] {
        let asset = v.call(Method::GET, path, None, None).await;
        assert_eq!(asset.status, StatusCode::OK, "{path}");
        let ct = asset.headers["content-type"].to_str().unwrap();
        assert!(ct.starts_with(kind), "{path}: {ct}");
        assert_eq!(asset.headers["x-content-type-options"], "nosniff");
    }
    let other = v
        .call(Method::GET, "/collect/assets/../../vault.db", None, None)
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);

    // A session nobody may frame says so twice (old browsers read X-Frame-Options only).
    let standalone = v.open_session(&key, &json!({})).await.json();
    let page = v.page(standalone["id"].as_str().unwrap(), None).await;
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.headers["x-frame-options"], "DENY");

    // No such session: a page that says so, with the same guards.
    let missing = v.page("cs_0000000000000000000000", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(
        missing.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let not_an_id = v.page(PAN, None).await;
    assert_eq!(not_an_id.status, StatusCode::NOT_FOUND);
    assert!(!not_an_id.text().contains(PAN), "the path is never echoed");
}

#[tokio::test]
async fn submissions_outside_the_rules_fail_cleanly_and_are_audited() {
    let v = TestVault::spawn_with(unlimited).await;
    let key = v.client("acme", SCOPES).await;
    let (id, secret) = v.session(&key).await;

    let wrong = v.submit(&id, &card("css_not-the-secret")).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.text());
    assert_eq!(wrong.code(), "invalid_secret");
    assert_eq!(wrong.json()["error"]["param"], "client_secret");

    let mut framed_elsewhere = card(&secret);
    framed_elsewhere["parent_origin"] = json!("https://evil.example");
    let evil = v.submit(&id, &framed_elsewhere).await;
    assert_eq!(evil.status, StatusCode::FORBIDDEN, "{}", evil.text());
    assert_eq!(evil.code(), "origin_not_allowed");

    // Posted by another site's page, or by no page at all.
    for origin in [Some("https://evil.example"), Some(SHOP), None] {
        let reply = v.submit_from(&id, &card(&secret), origin).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{origin:?}");
        assert_eq!(reply.code(), "origin_not_allowed");
    }

    let unknown = v.submit("cs_0000000000000000000000", &card(&secret)).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.code(), "not_found");

    let mut bad_pan = card(&secret);
    bad_pan["pan"] = json!("4242424242424241");
    let reply = v.submit(&id, &bad_pan).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.code(), "invalid_pan");
    assert!(
        !reply.text().contains("424242424242424"),
        "{}",
        reply.text()
    );

    let mut old = card(&secret);
    old["exp_year"] = json!(2001);
    let reply = v.submit(&id, &old).await;
    assert_eq!(reply.code(), "card_expired");
    assert_eq!(reply.json()["error"]["param"], "exp_month");

    let mut with_cvv = card(&secret);
    with_cvv["cvv"] = json!("123");
    let reply = v.submit(&id, &with_cvv).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.code(), "sensitive_data_rejected");

    // None of that used the session up.
    let read = v.session_state(&key, &id).await.json();
    assert_eq!(read["state"], "open", "{read}");
    let denied: Vec<_> = v
        .events("collect.submit")
        .into_iter()
        .map(|(outcome, actor, detail)| (outcome, actor == id, detail.unwrap_or_default()))
        .collect();
    assert_eq!(
        denied,
        vec![
            ("denied".to_owned(), true, "wrong client secret".to_owned()),
            (
                "denied".to_owned(),
                true,
                "parent origin not allowed".to_owned()
            ),
        ]
    );
    let ok = v.submit(&id, &card(&secret)).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
}

#[tokio::test]
async fn an_expired_session_takes_no_card() {
    let v = TestVault::spawn().await;
    let key = v.client("acme", SCOPES).await;
    let reply = v
        .open_session(&key, &json!({"allowed_origins": [SHOP], "ttl_seconds": 1}))
        .await;
    let body = reply.json();
    let (id, secret) = (
        body["id"].as_str().unwrap(),
        body["client_secret"].as_str().unwrap(),
    );
    // The session says when it has expired; the deadline only bounds a hang.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while v.session_state(&key, id).await.json()["state"] != "expired" {
        assert!(std::time::Instant::now() < deadline, "never expired");
        tokio::task::yield_now().await;
    }
    let reply = v.submit(id, &card(secret)).await;
    assert_eq!(reply.status, StatusCode::GONE, "{}", reply.text());
    assert_eq!(reply.code(), "session_expired");
    assert!(
        v.page(id, None)
            .await
            .text()
            .contains("data-state=\"expired\"")
    );
    assert_eq!(v.scalar::<i64>("SELECT count(*) FROM tokens", []), 0);
}

#[tokio::test]
async fn one_tenant_never_sees_anothers_session() {
    let v = TestVault::spawn().await;
    let (acme_id, acme) = v.client_with_id("acme", SCOPES).await;
    let globex = v.client("globex", SCOPES).await;
    let (id, secret) = v.session(&acme).await;
    assert_eq!(v.submit(&id, &card(&secret)).await.status, StatusCode::OK);
    let theirs = v.session_state(&globex, &id).await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    assert_eq!(theirs.code(), "not_found");
    let not_an_id = v.session_state(&globex, PAN).await;
    assert_eq!(not_an_id.status, StatusCode::NOT_FOUND);
    // The card went to acme's tenant only.
    let token = v.session_state(&acme, &id).await.json()["token"].clone();
    let read = v.read(&globex, token.as_str().unwrap()).await;
    assert_eq!(read.status, StatusCode::NOT_FOUND);

    // Nor does another client of the same tenant that may open sessions (the proxy's key,
    // say): only the opener reads a session's token and name.
    let sibling = v.client("acme", SCOPES).await;
    let reply = v.session_state(&sibling, &id).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text());
    assert!(!reply.text().contains("tok_"), "{}", reply.text());
    // Until the opener's key is rotated away (revoked): then its sessions pass to the tenant's
    // other collect:create clients, so a card typed into a link opened under the old key still
    // reaches its payout. Another tenant's client still sees nothing.
    v.admin.revoke_client(&acme_id).await.unwrap();
    let reply = v.session_state(&sibling, &id).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["token"], token);
    assert_eq!(
        v.session_state(&globex, &id).await.status,
        StatusCode::NOT_FOUND
    );

    let tokens_only = v.client("acme", ALL_SCOPES).await;
    let reply = v.open_session(&tokens_only, &json!({})).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.json()["error"]["param"], "collect:create");
    let reply = v.session_state(&tokens_only, &id).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_session_row_written_outside_the_vault_is_refused() {
    let v = TestVault::spawn().await;
    let key = v.client("acme", SCOPES).await;
    let (id, secret) = v.session(&key).await;
    // A DBA (or SQL injection elsewhere) lets another site frame the form.
    v.raw_db()
        .execute(
            "UPDATE collect_sessions SET allowed_origins = 'https://evil.example' WHERE id = ?1",
            [&id],
        )
        .unwrap();
    assert_eq!(v.page(&id, None).await.status, StatusCode::NOT_FOUND);
    let mut framed = card(&secret);
    framed["parent_origin"] = json!("https://evil.example");
    assert_eq!(v.submit(&id, &framed).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        v.session_state(&key, &id).await.status,
        StatusCode::NOT_FOUND
    );
    let log = String::from_utf8_lossy(&logs()).into_owned();
    assert!(log.contains("collect session row failed its integrity check"));

    // A completed session pointed at another card of the tenant's: the platform would pay
    // that card. The row no longer verifies, so it names no token at all.
    let (id, secret) = v.session(&key).await;
    assert_eq!(v.submit(&id, &card(&secret)).await.status, StatusCode::OK);
    let other = v
        .token_for(&v.client("acme", ALL_SCOPES).await, "5555555555554444")
        .await;
    v.raw_db()
        .execute(
            "UPDATE collect_sessions SET token = ?2, last4 = '4444' WHERE id = ?1",
            [&id, &other],
        )
        .unwrap();
    let read = v.session_state(&key, &id).await;
    assert_eq!(read.status, StatusCode::NOT_FOUND, "{}", read.text());
}

#[tokio::test]
async fn the_form_is_rate_limited_per_address() {
    let v = TestVault::spawn().await;
    let key = v.client("acme", SCOPES).await;
    let (id, _) = v.session(&key).await;
    let burst = v.config.limits.collect_submit_burst;
    let mut statuses = Vec::new();
    for _ in 0..=burst {
        statuses.push(v.submit(&id, &card("css_guess")).await);
    }
    let last = statuses.pop().unwrap();
    assert_eq!(
        last.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        last.text()
    );
    assert!(last.headers.contains_key("retry-after"));
    assert!(
        statuses.iter().all(|r| r.status != StatusCode::OK),
        "no guess succeeded"
    );
}

#[tokio::test]
async fn a_session_request_names_the_field_it_breaks() {
    let v = TestVault::spawn().await;
    let key = v.client("acme", SCOPES).await;
    let eleven: Vec<String> = (0..11).map(|i| format!("https://s{i}.example")).collect();
    for (body, param) in [
        (
            json!({"allowed_origins": ["http://shop.example"]}),
            "allowed_origins",
        ),
        (
            json!({"allowed_origins": ["https://shop.example/"]}),
            "allowed_origins",
        ),
        (json!({"allowed_origins": ["*"]}), "allowed_origins"),
        // Hosts a URL parser lets through but a CSP reads as syntax: a wildcard, the end of
        // the directive, another policy.
        (json!({"allowed_origins": ["https://*"]}), "allowed_origins"),
        (
            json!({"allowed_origins": ["https://*.example"]}),
            "allowed_origins",
        ),
        (
            json!({"allowed_origins": ["https://a;script-src"]}),
            "allowed_origins",
        ),
        (
            json!({"allowed_origins": ["https://a,b"]}),
            "allowed_origins",
        ),
        (json!({"allowed_origins": eleven}), "allowed_origins"),
        (
            json!({"allowed_origins": "https://shop.example"}),
            "allowed_origins",
        ),
        (json!({"ttl_seconds": 0}), "ttl_seconds"),
        (
            json!({"allowed_origins": [SHOP], "ttl_seconds": 3601}),
            "ttl_seconds",
        ),
        (json!({"ttl_seconds": 604_801}), "ttl_seconds"),
        (json!({"metadata": "x"}), "metadata"),
        (json!({"metadata": {"note": PAN}}), "metadata"),
        (json!({"metadata": {"blob": "x".repeat(3000)}}), "metadata"),
        (
            json!({"require_cardholder_name": "yes"}),
            "require_cardholder_name",
        ),
    ] {
        let reply = v.open_session(&key, &body).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            reply.text()
        );
        assert_eq!(reply.json()["error"]["param"], param, "{body}");
        assert!(!reply.text().contains(PAN), "{}", reply.text());
    }
    // A standalone session (a link sent to the cardholder) may wait a week; a framed one an hour.
    let link = v.open_session(&key, &json!({"ttl_seconds": 604_800})).await;
    assert_eq!(link.status, StatusCode::CREATED, "{}", link.text());
    let reply = v
        .open_session(&key, &json!({"metadata": {"card": {"cvv": "123"}}}))
        .await;
    assert_eq!(reply.code(), "sensitive_data_rejected");
    let reply = v
        .open_session(&key, &json!({"allowed_origins": [SHOP, SHOP]}))
        .await;
    assert_eq!(
        reply.json()["allowed_origins"],
        json!([SHOP]),
        "duplicates fold"
    );
}

#[tokio::test]
async fn a_session_may_ask_for_the_cardholders_name() {
    let v = TestVault::spawn().await;
    let key = v.client("acme", SCOPES).await;
    let reply = v
        .open_session(
            &key,
            &json!({"allowed_origins": [SHOP], "require_cardholder_name": true}),
        )
        .await
        .json();
    let (id, secret) = (
        reply["id"].as_str().unwrap(),
        reply["client_secret"].as_str().unwrap(),
    );
    assert!(
        v.page(id, None)
            .await
            .text()
            .contains("data-name=\"required\"")
    );
    let missing = v.submit(id, &card(secret)).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing.json()["error"]["param"], "cardholder_name");
    let mut named = card(secret);
    named["cardholder_name"] = json!(PAN);
    let reply = v.submit(id, &named).await;
    assert_eq!(reply.json()["error"]["param"], "cardholder_name");
    named["cardholder_name"] = json!("IVAN PETROV");
    assert_eq!(v.submit(id, &named).await.status, StatusCode::OK);
    let read = v.session_state(&key, id).await.json();
    assert_eq!(read["cardholder_name"], "IVAN PETROV");
}

#[tokio::test]
async fn a_framed_sessions_card_comes_only_through_its_frame() {
    let v = TestVault::spawn_with(unlimited).await;
    let key = v.client("acme", SCOPES).await;
    // The form of a framed session opened on its own page (its secret leaked): no parent names
    // itself, and the vault refuses.
    let (id, secret) = v.session(&key).await;
    let mut top_level = card(&secret);
    top_level.as_object_mut().unwrap().remove("parent_origin");
    let reply = v.submit(&id, &top_level).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text());
    assert_eq!(reply.code(), "origin_not_allowed");
    // A standalone session (a link) is never framed, so a form claiming a parent is not ours.
    let link = v.open_session(&key, &json!({})).await.json();
    let (link_id, link_secret) = (
        link["id"].as_str().unwrap(),
        link["client_secret"].as_str().unwrap(),
    );
    let reply = v.submit(link_id, &card(link_secret)).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text());
    assert_eq!(reply.code(), "origin_not_allowed");
    // Each as it should be takes its card.
    assert_eq!(v.submit(&id, &card(&secret)).await.status, StatusCode::OK);
    let mut standalone = card(link_secret);
    standalone.as_object_mut().unwrap().remove("parent_origin");
    assert_eq!(v.submit(link_id, &standalone).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_completed_session_rolled_back_in_the_database_takes_no_second_card() {
    let v = TestVault::spawn().await;
    let key = v.client("acme", SCOPES).await;
    let (id, secret) = v.session(&key).await;
    let db = v.raw_db();
    // A copy of the row as the vault wrote it, before any card: its MAC is the vault's own.
    db.execute(
        "CREATE TABLE before_card AS SELECT * FROM collect_sessions WHERE id = ?1",
        [&id],
    )
    .unwrap();
    let first = v.submit(&id, &card(&secret)).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    // Restored from that copy (a backup, a DBA): the row says open again and verifies.
    db.execute(
        "UPDATE collect_sessions SET completed_at = NULL, token = NULL, last4 = NULL, \
         brand = NULL, cardholder_name = NULL, \
         mac = (SELECT mac FROM before_card WHERE id = ?1) WHERE id = ?1",
        [&id],
    )
    .unwrap();
    assert!(
        v.page(&id, None)
            .await
            .text()
            .contains("data-state=\"open\""),
        "the restored row verifies, so its page opens"
    );
    let mut other = card(&secret);
    other["pan"] = json!("5555555555554444");
    let second = v.submit(&id, &other).await;
    assert_eq!(second.status, StatusCode::CONFLICT, "{}", second.text());
    assert_eq!(second.code(), "session_completed");
    assert_eq!(
        v.scalar::<i64>("SELECT count(*) FROM tokens", []),
        1,
        "no second card was stored"
    );
    let log = String::from_utf8_lossy(&logs()).into_owned();
    assert!(
        log.contains("row was rolled back to open"),
        "the rollback is logged"
    );
}

#[tokio::test]
async fn a_session_refused_again_and_again_is_counted_not_written_each_time() {
    let v = TestVault::spawn_with(unlimited).await;
    let key = v.client("acme", SCOPES).await;
    let (id, secret) = v.session(&key).await;
    let bound = vault::limits::AUDITED_REFUSALS_PER_SESSION as usize;
    for _ in 0..bound + 15 {
        let reply = v.submit(&id, &card("css_guess")).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());
    }
    let denied = v.events("collect.submit");
    assert_eq!(
        denied.len(),
        bound,
        "one audit row per refusal only up to the bound"
    );
    // The session still works for whoever holds its secret.
    assert_eq!(v.submit(&id, &card(&secret)).await.status, StatusCode::OK);

    // At once, too: the bound is taken, not checked and then counted, so a burst of concurrent
    // refusals of a fresh session cannot all pass before any is counted.
    let (fresh, fresh_secret) = v.session(&key).await;
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let (http, url, origin) = (
            v.http.clone(),
            format!("{}/collect/{fresh}/submit", v.base),
            v.base.clone(),
        );
        burst.spawn(async move {
            http.post(url)
                .header("content-type", "application/json")
                .header("origin", origin)
                .body(card("css_guess").to_string())
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    while let Some(status) = burst.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::UNAUTHORIZED);
    }
    let of_fresh = v
        .events("collect.submit")
        .into_iter()
        .filter(|(_, actor, _)| *actor == fresh)
        .count();
    assert_eq!(
        of_fresh, bound,
        "audit rows for one session, refused 200 times at once"
    );
    assert_eq!(
        v.submit(&fresh, &card(&fresh_secret)).await.status,
        StatusCode::OK
    );
    assert!(v.verify_audit().await.is_ok());
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_cardholder_has_their_own_limit() {
    let v =
        TestVault::spawn_with(|c| c.limits.trusted_proxies = vec!["127.0.0.1".to_owned()]).await;
    let key = v.client("acme", SCOPES).await;
    let (id, secret) = v.session(&key).await;
    let burst = v.config.limits.collect_submit_burst;
    let from = |forwarded: &'static str| {
        let v = &v;
        let id = id.clone();
        async move {
            v.http
                .post(format!("{}/collect/{id}/submit", v.base))
                .header("content-type", "application/json")
                .header("origin", &v.base)
                .header("x-forwarded-for", forwarded)
                .body(card("css_guess").to_string())
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // One cardholder (or attacker) spends their burst...
    for _ in 0..burst {
        assert_ne!(from("198.51.100.1").await, StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(from("198.51.100.1").await, StatusCode::TOO_MANY_REQUESTS);
    // ...and cannot buy another by writing a new address in front of the one the proxy added.
    assert_eq!(
        from("203.0.113.77, 198.51.100.1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Nor by spoiling its own part of the line with unreadable bytes.
    let spoiled = v
        .http
        .post(format!("{}/collect/{id}/submit", v.base))
        .header("content-type", "application/json")
        .header("origin", &v.base)
        .header(
            "x-forwarded-for",
            reqwest::header::HeaderValue::from_bytes(b"\x80, 198.51.100.1").unwrap(),
        )
        .body(card("css_guess").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(spoiled.status(), StatusCode::TOO_MANY_REQUESTS);
    // Another cardholder behind the same proxy still gets through.
    let other = v
        .http
        .post(format!("{}/collect/{id}/submit", v.base))
        .header("content-type", "application/json")
        .header("origin", &v.base)
        .header("x-forwarded-for", "198.51.100.2")
        .body(card(&secret).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK, "{:?}", other.text().await);
}

#[tokio::test]
async fn without_trusted_proxies_a_forwarded_address_is_not_believed() {
    let v = TestVault::spawn().await;
    let key = v.client("acme", SCOPES).await;
    let (id, _) = v.session(&key).await;
    let burst = v.config.limits.collect_submit_burst;
    let mut last = StatusCode::OK;
    // Each request claims a new address; all are the one TCP peer they really are.
    for i in 0..=burst {
        last = v
            .http
            .post(format!("{}/collect/{id}/submit", v.base))
            .header("content-type", "application/json")
            .header("origin", &v.base)
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .body(card("css_guess").to_string())
            .send()
            .await
            .unwrap()
            .status();
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn with_its_own_listener_the_form_and_the_api_are_apart() {
    let v =
        TestVault::spawn_with(|c| c.collect.listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let form = v.form_base.clone().expect("the form's listener");
    assert_ne!(form, v.base);
    let key = v.client("acme", SCOPES).await;
    let created = v
        .open_session(&key, &json!({"allowed_origins": [SHOP]}))
        .await
        .json();
    let (id, secret) = (
        created["id"].as_str().unwrap(),
        created["client_secret"].as_str().unwrap(),
    );
    assert_eq!(
        created["url"],
        format!("{form}/collect/{id}"),
        "the session's url is the form's listener"
    );
    let get = |url: String| {
        let http = v.http.clone();
        async move { http.get(url).send().await.unwrap().status() }
    };
    // The public side serves the form and nothing of the API...
    assert_eq!(get(format!("{form}/collect/{id}")).await, StatusCode::OK);
    assert_eq!(get(format!("{form}/collect.js")).await, StatusCode::OK);
    assert_eq!(get(format!("{form}/healthz")).await, StatusCode::OK);
    for path in ["/metrics", "/readyz", "/v1/clients/me"] {
        assert_eq!(
            get(format!("{form}{path}")).await,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let detokenize = v
        .http
        .post(format!("{form}/v1/tokens/tok_x/detokenize"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(detokenize.status(), StatusCode::NOT_FOUND);
    // ...and the API side no form.
    assert_eq!(
        get(format!("{}/collect/{id}", v.base)).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(format!("{}/collect.js", v.base)).await,
        StatusCode::NOT_FOUND
    );
    // A card goes in through the form's listener, from its origin.
    let submitted = v
        .http
        .post(format!("{form}/collect/{id}/submit"))
        .header("content-type", "application/json")
        .header("origin", &form)
        .body(card(secret).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(submitted.status(), StatusCode::OK);
    let read = v.session_state(&key, id).await.json();
    assert_eq!(read["state"], "completed", "{read}");
    // Both listeners stop on the one signal.
    let mut v = v;
    v.stop().await;
}

#[tokio::test]
async fn the_form_page_is_rate_limited_per_address_too() {
    let v = TestVault::spawn_with(|c| {
        c.limits.collect_page_per_second = 1;
        c.limits.collect_page_burst = 3;
    })
    .await;
    let key = v.client("acme", SCOPES).await;
    let (id, _) = v.session(&key).await;
    for _ in 0..3 {
        assert_eq!(v.page(&id, None).await.status, StatusCode::OK);
    }
    // Each load is a database read of a public page: past the burst, a page that says so.
    let busy = v.page(&id, Some("ru")).await;
    assert_eq!(busy.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(busy.headers.contains_key("retry-after"));
    assert!(busy.text().contains("lang=\"ru\""), "{}", busy.text());
    assert!(!busy.text().contains(&id), "the busy page names no session");
    assert!(
        busy.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    // Unknown ids cost the same: the limit comes before the lookup.
    assert_eq!(
        v.page("cs_0000000000000000000000", None).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// The client key (which MACs client rows and collect sessions) rotates: rows MAC'd before keep
/// authenticating, the rewrap job MACs them again under the new version, and only then is the
/// old version destroyed; a client and a session made before still work after.
#[tokio::test]
async fn a_client_key_rotation_keeps_every_row_authentic_and_destroys_the_old_key_once_moved() {
    use vault::crypto::KeyPurpose;
    use vault::service::VaultError;
    let v = TestVault::spawn_with(|c| c.keys.rewrap_in_background = false).await;
    let key = v.client("acme", SCOPES).await;
    let (id, _) = v.session(&key).await;
    let mac_before: Vec<u8> = v.scalar("SELECT mac FROM collect_sessions WHERE id = ?1", [&id]);
    assert_eq!(
        v.admin.rotate_key("cli", KeyPurpose::Client).await.unwrap(),
        2
    );
    // Rows MAC'd under v1 keep working while v1 is held.
    assert_eq!(v.session_state(&key, &id).await.status, StatusCode::OK);
    v.admin
        .retire_key("cli", KeyPurpose::Client, 1)
        .await
        .unwrap();
    assert!(matches!(
        v.admin.destroy_key("cli", KeyPurpose::Client, 1, false).await,
        Err(VaultError::Invalid(m)) if m.contains("still MAC'd under an older client key")
    ));
    let done = v
        .admin
        .rewrap("cli", 100, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert!(done.remaced >= 2, "{done:?}");
    let mac_after: Vec<u8> = v.scalar("SELECT mac FROM collect_sessions WHERE id = ?1", [&id]);
    assert_ne!(mac_before, mac_after);
    v.admin
        .destroy_key("cli", KeyPurpose::Client, 1, false)
        .await
        .unwrap();
    // With v1 gone, the client and its session still authenticate (the serving vault re-reads
    // the keys within a second; either keyring accepts the new MACs once it holds v2).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let state = v.session_state(&key, &id).await.status;
        if state == StatusCode::OK {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{state}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        v.admin
            .verify_audit_and_clients(&Default::default())
            .await
            .unwrap()
            .is_ok()
    );
    // A row MAC'd under the destroyed version (restored from before the rewrap, say) is no
    // longer authentic.
    v.raw_db()
        .execute(
            "UPDATE collect_sessions SET mac = ?2 WHERE id = ?1",
            rusqlite::params![id, mac_before],
        )
        .unwrap();
    assert_eq!(
        v.session_state(&key, &id).await.status,
        StatusCode::NOT_FOUND
    );
}
