//! Inputs (issue 11 §4), through the running proxy: card data in any spelling and at any depth is
//! refused with the path of the field that held it, never its value; what an integrator
//! ordinarily sends is accepted.

use serde_json::{Value, json};

use crate::stack::{PROJECT, Stack, assert_names_setting};

fn fullwidth(digits: &str) -> String {
    digits
        .chars()
        .map(|c| char::from_u32(0xFF10 + u32::from(c) - u32::from('0')).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_data_is_refused_at_any_depth_in_any_spelling_and_ordinary_data_is_not() {
    let stack = Stack::start().await;
    let token = stack.tokenize("4242424242424242").await;
    let body = |name: &str, metadata: Value| {
        json!({"card_token": token, "amount": 100, "currency": "RUB",
               "recipient": {"full_name": name}, "metadata": metadata})
    };

    // (recipient name, metadata, the field the error must name)
    let refused: Vec<(String, Value, &str)> = vec![
        (
            "A B".into(),
            json!({"card": {"cvv": "737", "pin": "1234"}}),
            "metadata.card.cvv",
        ),
        (
            "A B".into(),
            json!({"items": [{"sku": "x"}, {"Track_2": "x"}]}),
            "metadata.items[1].Track_2",
        ),
        (
            "4242.4242.4242.4242".into(),
            json!({}),
            "recipient.full_name",
        ),
        (
            "Ivan 5555/5555/5555/4444".into(),
            json!({}),
            "recipient.full_name",
        ),
        (
            "A B".into(),
            json!({"n": "4242_4242_4242_4242"}),
            "metadata.n",
        ),
        (
            "A B".into(),
            json!({"n": "4242  4242  4242  4242"}),
            "metadata.n",
        ),
        (
            fullwidth("2200000000000004"),
            json!({}),
            "recipient.full_name",
        ),
        (
            "A B".into(),
            json!({"deep": {"er": [fullwidth("5555555555554444")]}}),
            "metadata.deep.er[0]",
        ),
        (
            "A B".into(),
            json!({"parts": [4242, 4242, 4242, 4242]}),
            "metadata.parts",
        ),
        (
            "A B".into(),
            json!({"parts": ["4000", "0566", "5566", "5556"]}),
            "metadata.parts",
        ),
        (
            "A B".into(),
            json!({"n": 4_000_056_655_665_556_u64}),
            "metadata.n",
        ),
        ("A B".into(), json!({"4242424242424242": 1}), "metadata.*"),
    ];
    for (i, (name, metadata, field)) in refused.iter().enumerate() {
        let (status, bytes) = stack
            .create_payout(&format!("refused-{i}"), &body(name, metadata.clone()))
            .await;
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(status, 400, "{name} {metadata}: {text}");
        let error: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(error["error"]["code"], "sensitive_data_rejected", "{text}");
        assert_eq!(error["error"]["param"], *field, "{name} {metadata}: {text}");
        for value in [name.as_str(), "737", "1234", "4242", "5555"] {
            if value != "A B" {
                assert!(!text.contains(value), "the error echoes {value}: {text}");
            }
        }
    }

    // An Idempotency-Key holding a card.
    let (status, bytes) = stack
        .create_payout("order-4242-4242-4242-4242", &body("A B", json!({})))
        .await;
    assert_eq!(status, 400);
    let error: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(error["error"]["param"], "Idempotency-Key");

    // Ordinary marketplace data.
    let accepted = [
        json!({"order": "ORD-20261201-000123"}),
        json!({"created_ms": 1_796_134_768_000_u64}),
        json!({"account": "40817810099910004312"}),
        json!({"ref": "1234567890123"}),
        json!({"at": "2026-12-01T18:29:54.014285Z", "phone": "+7 (912) 345-67-89"}),
        json!({"lines": [{"sku": "A-1", "qty": 2, "price": 150_000}]}),
    ];
    for (i, metadata) in accepted.iter().enumerate() {
        let (status, bytes) = stack
            .create_payout(
                &format!("ORD-20261201-{i:06}"),
                &body("Ivanov Ivan", metadata.clone()),
            )
            .await;
        assert_eq!(
            status,
            201,
            "{metadata}: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
}

/// A token the vault does not hold for the tenant fails the payout before the bank hears of it:
/// no orphan session in the bank project.
/// Issue 12 §3: a token the vault does not hold is refused at create (404, naming the field),
/// not accepted and failed later; a replay of an accepted payout is still answered after its
/// token is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_card_token_is_refused_at_create_and_the_bank_hears_nothing() {
    let stack = Stack::start().await;
    // A well-formed token the vault never issued: a real one with its last character changed.
    let real = stack.tokenize("4242424242424242").await;
    let last = if real.ends_with('A') { "B" } else { "A" };
    let unknown = format!("{}{last}", &real[..real.len() - 1]);
    let body = |token: &str| {
        json!({"card_token": token, "amount": 100, "currency": "RUB",
               "recipient": {"full_name": "Ivanov Ivan"}, "confirm": "manual"})
    };
    let (status, bytes) = stack.create_payout("unknown-token", &body(&unknown)).await;
    let refused: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(status, 404, "{refused}");
    assert_eq!(refused["error"]["code"], "card_token_not_found");
    assert_eq!(refused["error"]["param"], "card_token");
    assert!(!refused.to_string().contains(&unknown), "echoed: {refused}");
    let (_, listed) = stack.get_json(&stack.app_key, "/v1/payouts").await;
    assert_eq!(listed["data"], json!([]), "a refused payout was kept");
    let session_creates = stack.requests("session/create").await.len();
    assert_eq!(
        session_creates, 0,
        "the bank heard of a payout whose token does not exist"
    );

    // Accepted with a real token, which is then deleted: the same request again is the first
    // answer, replayed, not a 404.
    let (status, first) = stack.create_payout("real-token", &body(&real)).await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&first));
    let first: Value = serde_json::from_slice(&first).unwrap();
    let deleter = tests::stack::field(
        &stack.vault_cli(&[
            "clients",
            "create",
            "--name",
            "ops",
            "--tenant",
            "acme",
            "--scopes",
            "tokens:delete",
        ]),
        "api_key:",
    )
    .unwrap();
    let deleted = stack
        .http
        .delete(format!("{}/v1/tokens/{real}", stack.vault_url))
        .bearer_auth(&deleter)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let (status, again) = stack.create_payout("real-token", &body(&real)).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&again));
    let again: Value = serde_json::from_slice(&again).unwrap();
    assert_eq!(again["id"], first["id"]);
    let (status, _) = stack.create_payout("real-token-2", &body(&real)).await;
    assert_eq!(status, 404, "a deleted token was accepted");
}

/// Issue 12 §2: errors name the parameter and the rule, never the value; currencies are ISO
/// 4217 and stored upper-case; `limit=0` is refused; the `Bearer` scheme is case-insensitive; a
/// replayed create says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_param_and_the_api_behaves_as_integrators_expect() {
    let stack = Stack::start().await;
    let token = stack.tokenize("4242424242424242").await;
    let body = |amount: Value, currency: &str, name: &str, card: &str| {
        json!({"card_token": card, "amount": amount, "currency": currency,
               "recipient": {"full_name": name}})
    };
    for (i, (b, param)) in [
        (body(json!(0), "RUB", "A B", &token), "amount"),
        (body(json!(-5), "RUB", "A B", &token), "amount"),
        (body(json!(100), "XYZ", "A B", &token), "currency"),
        (body(json!(100), "RUBLES", "A B", &token), "currency"),
        (body(json!(100), "RUB", " ", &token), "recipient.full_name"),
        (body(json!(100), "RUB", "A B", "tok_short"), "card_token"),
    ]
    .into_iter()
    .enumerate()
    {
        let (status, bytes) = stack.create_payout(&format!("bad-{i}"), &b).await;
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(status, 400, "{b}: {text}");
        let e: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(e["error"]["code"], "invalid_request", "{text}");
        assert_eq!(e["error"]["param"], param, "{b}: {text}");
        for value in ["XYZ", "RUBLES", "tok_short", "-5"] {
            assert!(!text.contains(value), "echoed {value}: {text}");
        }
    }

    // Bodies of the wrong shape name the field too, and say the rule in words (no Rust type
    // names, no values).
    let shapes = [
        (
            json!({"card_token": token, "amount": "100", "currency": "RUB", "recipient": {"full_name": "A B"}}),
            "amount",
        ),
        (
            json!({"card_token": token, "amount": 1.5, "currency": "RUB", "recipient": {"full_name": "A B"}}),
            "amount",
        ),
        (
            json!({"card_token": token, "currency": "RUB", "recipient": {"full_name": "A B"}}),
            "amount",
        ),
        (
            json!({"card_token": token, "amount": 100, "currency": "RUB", "recipient": {}}),
            "recipient.full_name",
        ),
        (
            json!({"card_token": token, "amount": 100, "currency": "RUB", "recipient": {"full_name": "A B"}, "confirm": "maybe"}),
            "confirm",
        ),
        (
            json!({"card_token": token, "amount": 100, "currency": "RUB", "recipient": {"full_name": "A B"}, "colour": "red"}),
            "colour",
        ),
        (
            json!({"card_token": token, "amount": 100, "currency": 643, "recipient": {"full_name": "A B"}}),
            "currency",
        ),
    ];
    for (i, (b, param)) in shapes.into_iter().enumerate() {
        let (status, bytes) = stack.create_payout(&format!("shape-{i}"), &b).await;
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(status, 400, "{b}: {text}");
        let e: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(e["error"]["param"], param, "{b}: {text}");
        let message = e["error"]["message"].as_str().unwrap();
        for word in message.split(|c: char| !c.is_ascii_alphanumeric()) {
            assert!(
                !["i64", "u64", "u32", "usize", "f64", "str", "String"].contains(&word),
                "a Rust type in {message}"
            );
        }
        for value in ["red", "maybe", "643", "1.5"] {
            assert!(!text.contains(value), "echoed {value}: {text}");
        }
    }

    // ISO 4217, any case in, upper case stored; a replay says it is one.
    let good = body(json!(100), "rub", "Ivanov Ivan", &token);
    let first = stack
        .payout_request("replay-1", &good)
        .bearer_auth(&stack.app_key)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let created: Value = first.json().await.unwrap();
    assert_eq!(created["currency"], "RUB");
    let again = stack
        .payout_request("replay-1", &good)
        // The scheme in lower case (RFC 9110: case-insensitive).
        .header("authorization", format!("bearer {}", stack.app_key))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let replayed: Value = again.json().await.unwrap();
    assert_eq!(replayed["id"], created["id"]);

    // The list's query parameters.
    for (query, param) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("status=bogus", "status"),
        ("after=nope", "after"),
    ] {
        let r = stack
            .http
            .get(format!("{}/v1/payouts?{query}", stack.proxy_url))
            .header("authorization", format!("BEARER {}", stack.app_key))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{query}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["param"], param, "{query}");
    }

    // A 403 names the scope the key lacks.
    let reader = stack.proxy_client("reader", "acme", "payouts:read");
    let (status, body) = stack.create_payout_as(&reader, "reader-1", &good).await;
    assert_eq!(status, 403);
    let e: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(e["error"]["param"], "payouts:write", "{e}");

    // The vault takes the scheme in any case too.
    let r = stack
        .http
        .post(format!("{}/v1/tokens", stack.vault_url))
        .header("authorization", format!("bearer {}", stack.vault_app_key))
        .json(&json!({"pan": "5555555555554444"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
}

/// Issue 12 §1: a vault key that cannot detokenize is named by `/readyz` (and at start), and a
/// payout it fails says so, instead of "vault unavailable" after repeated retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_key_that_cannot_detokenize_is_named_at_readyz_and_at_create() {
    let mut stack = Stack::start().await;
    assert_eq!(stack.get_as("", "/readyz").await.0, 200);
    // Swap the proxy's vault key for the app's (tokens:create, tokens:read: no detokenize).
    let toml = std::fs::read_to_string(stack.path("proxy.toml")).unwrap();
    let start =
        toml.find("[vault.api_keys]\nacme = \"").unwrap() + "[vault.api_keys]\nacme = \"".len();
    let end = start + toml[start..].find('"').unwrap();
    let swapped = format!("{}{}{}", &toml[..start], stack.vault_app_key, &toml[end..]);
    stack.reconfigure_proxy(swapped).await;

    let (ready, body) = stack.get_json("", "/readyz").await;
    assert_eq!(ready, 503);
    let problems = body["problems"].to_string();
    assert!(
        problems.contains("vault.api_keys.acme") && problems.contains("tokens:detokenize"),
        "{body}"
    );
    assert!(
        !problems.contains(&stack.vault_app_key),
        "a key in the readiness answer"
    );

    // A payout is refused at once, naming the setting, and nothing is kept.
    let token = stack.tokenize("4242424242424242").await;
    let (status, body) = stack
        .create_payout(
            "forbidden-key",
            &json!({"card_token": token, "amount": 100, "currency": "RUB",
                    "recipient": {"full_name": "Ivanov Ivan"}}),
        )
        .await;
    let refused: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 503, "{refused}");
    assert_names_setting(
        &refused["error"],
        "vault_key_forbidden",
        "vault.api_keys",
        &refused,
    );
    let (_, listed) = stack.get_json(&stack.app_key, "/v1/payouts").await;
    assert_eq!(listed["data"], json!([]), "a refused payout was kept");
}

/// Issue 12 §1: a bank setting that cannot work (an unknown project, a partner key the bank does
/// not hold for the project) makes `/readyz` fail naming it, checked with a signed
/// `wallet/balance`; an unreachable bank is named as a warning while the proxy stays ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bank_setting_that_cannot_work_is_named_at_readyz() {
    let mut stack = Stack::start().await;
    let original = std::fs::read_to_string(stack.path("proxy.toml")).unwrap();
    let dead_port = tests::stack::free_port().unwrap();
    let project = |key_pem: &str| json!({"id": PROJECT, "partner_public_key_pem": key_pem});
    let partner_key = original
        .lines()
        .find_map(|l| l.strip_prefix("private_key_file = "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    let ours = tests::sandbox::Signer::from_pem(&std::fs::read_to_string(partner_key).unwrap())
        .unwrap()
        .public_key_pem()
        .to_owned();
    let (_, stranger) = tests::sandbox::generate_rsa_keypair_pem().unwrap();
    let cases = [
        (
            original.replace(
                &format!("project = \"{}\"", PROJECT),
                "project = \"not-our-project\"",
            ),
            None,
            "bank131.project",
            503,
        ),
        // The bank holds another public key for the project than the proxy's partner key.
        (
            original.clone(),
            Some(stranger.as_str()),
            "bank131.private_key_file",
            503,
        ),
        (
            original.replace(&stack.sandbox_url, &format!("http://127.0.0.1:{dead_port}")),
            None,
            "bank131.base_url",
            // Unreachable is an outage, not configuration: said, and still ready.
            200,
        ),
    ];
    for (toml, registered, setting, status) in cases {
        if let Some(pem) = registered {
            stack.control("projects", project(pem)).await;
        }
        stack.reconfigure_proxy(toml).await;
        let (ready, body) = stack.get_json("", "/readyz").await;
        assert_eq!(ready, status, "{setting}");
        let list = if status == 503 {
            "problems"
        } else {
            "warnings"
        };
        let problems = body[list].as_array().unwrap();
        assert_eq!(problems.len(), 1, "{body}");
        assert!(
            problems[0].as_str().unwrap().starts_with(setting),
            "{setting}: {body}"
        );
        stack.control("projects", project(&ours)).await;
    }
    stack.reconfigure_proxy(original).await;
    assert_eq!(stack.get_as("", "/readyz").await.0, 200);
}

/// Issue 13 §1: every answer, whatever made it (a handler, a fallback, axum's own body limit on
/// the app routes and on the bank's webhook route), leaves with `Cache-Control: no-store` and a
/// request id, and the error ones in the proxy's body. The proxy once set both headers and then
/// replaced its 413, which went out without them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_no_store_and_a_request_id() {
    let stack = Stack::start().await;
    // Over the limits (16 KiB for the app routes, 256 KiB for the webhook route) but small
    // enough that the request is sent whole before the proxy answers.
    let big = |n: usize| format!(r#"{{"metadata":"{}"}}"#, "x".repeat(n));
    let base = &stack.proxy_url;
    let cases = [
        ("GET", "/healthz", false, None, 200, None),
        ("GET", "/readyz", false, None, 200, None),
        ("GET", "/v1/payouts", false, None, 401, Some("unauthorized")),
        ("GET", "/nowhere", false, None, 404, Some("route_not_found")),
        (
            "DELETE",
            "/v1/payouts",
            true,
            None,
            405,
            Some("method_not_allowed"),
        ),
        (
            "POST",
            "/v1/payouts",
            true,
            Some(big(20_000)),
            413,
            Some("payload_too_large"),
        ),
        (
            "POST",
            "/webhooks/bank131",
            false,
            Some(big(300_000)),
            413,
            Some("payload_too_large"),
        ),
    ];
    for (method, path, authed, body, status, code) in cases {
        let mut req = stack
            .http
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .header("idempotency-key", "k-1");
        if authed {
            req = req.bearer_auth(&stack.app_key);
        }
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body);
        }
        let resp = req.send().await.unwrap();
        let what = format!("{method} {path}");
        assert_eq!(resp.status().as_u16(), status, "{what}");
        assert_eq!(resp.headers()["cache-control"], "no-store", "{what}");
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(id.starts_with("req_"), "{what}: {id}");
        let body: Value = resp.json().await.unwrap();
        if let Some(code) = code {
            assert_eq!(body["error"]["code"], code, "{what}: {body}");
        }
    }
}
