//! Bad input gets a clear 4xx that never echoes it, in the body or the logs.

use reqwest::{Method, StatusCode};

use crate::helpers::{ALL_SCOPES, TestVault, logs};

/// Digits that must never come back. Each bad body below carries one of these.
fn assert_not_echoed(haystack: &[u8], secrets: &[&str], what: &str) {
    let text = without_timestamps(&String::from_utf8_lossy(haystack));
    for secret in secrets {
        let digits: String = secret.chars().filter(char::is_ascii_digit).collect();
        if digits.len() < 6 {
            assert!(!text.contains(secret), "{what} echoes its input: {text}");
            continue;
        }
        // No run of 6 of its digits either (a partial echo).
        for window in digits.as_bytes().windows(6) {
            let window = std::str::from_utf8(window).unwrap();
            assert!(!text.contains(window), "{what} echoes {window}: {text}");
        }
    }
}

/// Log lines' own timestamps carry six digits of microseconds, which match a window of some
/// secret now and then (`…16.010000Z` against `497010000013`): they are not input.
fn without_timestamps(text: &str) -> String {
    const FIELD: &str = "\"timestamp\":\"";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(FIELD) {
        out.push_str(&rest[..at]);
        let after = &rest[at + FIELD.len()..];
        rest = after.find('"').map_or("", |end| &after[end..]);
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn bad_pans_and_bodies_get_4xx_without_echo() {
    let v = TestVault::spawn().await;
    let key = v.client("acme", ALL_SCOPES).await;

    // (code, digits that must not come back, bodies): each body is refused with a 400 and the
    // code, and never echoes the digits.
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "invalid_pan",
            "4242abcd42424242",
            &[r#"{"pan":"4242abcd42424242"}"#],
        ),
        (
            "invalid_pan",
            "424242424242",
            &[r#"{"pan":"４２４２４２４２４２４２４２４２"}"#],
        ),
        ("invalid_pan", "٤٢٤٢٤٢", &[r#"{"pan":"٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢"}"#]),
        (
            "invalid_pan",
            "497010000013",
            &[r#"{"pan":"497010000013"}"#],
        ),
        (
            "invalid_pan",
            "49701000001300000008",
            &[r#"{"pan":"49701000001300000008"}"#],
        ),
        (
            "invalid_pan",
            "4970100000130008",
            &[r#"{"pan":"4970100000130008"}"#],
        ),
        (
            "invalid_pan",
            "4970100000130001",
            &[
                r#"{"pan":4970100000130001}"#,
                r#"{"pan":4.970100000130001e15}"#,
                r#"{"pan":["4970100000130001"]}"#,
                r#"{"pan":{"n":"4970100000130001"}}"#,
            ],
        ),
        (
            "invalid_pan",
            "49701000001300010000123",
            &[r#"{"pan":49701000001300010000123}"#],
        ),
        (
            "invalid_request",
            "4970100000130001",
            &[
                r#"{"pan":"4242424242424242","card_number":"4970100000130001"}"#,
                r#"{"pan":"4242424242424242","4970100000130001":1}"#,
                r#"{"number":"4970100000130001"}"#,
                r#"{"pan":"4242424242424242","exp_month":"4970100000130001"}"#,
                r#"{"pan":"4242424242424242","exp_month":4970100000130001}"#,
                r#"{"pan":"4242424242424242","ttl_seconds":-4970100000130001}"#,
                "\"4970100000130001\"",
            ],
        ),
        (
            "invalid_request",
            "4242424242424242",
            &[
                r#"{"pan":"4242424242424242","exp_month":13,"exp_year":2030}"#,
                r#"{"pan":"4242424242424242","exp_month":12}"#,
                r#"{"pan":"4242424242424242","ttl_seconds":0}"#,
            ],
        ),
        (
            "sensitive_data_rejected",
            "4970100000130001",
            &[
                r#"{"pan":"4970100000130001","cvv":"737"}"#,
                r#"{"pan":"4970100000130001","CVC2":"737"}"#,
                r#"{"pan":"4970100000130001","security_code":"737"}"#,
                r#"{"pan":"4970100000130001","track2":";4970100000130001=2512?"}"#,
                r#"{"pan":"4970100000130001","pin":"1234"}"#,
                r#"{"pan":"4970100000130001","pin_block":"0412AC89ABCDEF67"}"#,
            ],
        ),
        (
            "malformed_json",
            "4970100000130001",
            &[
                r#"{"pan":"4970100000130001""#,
                r#"{"pan":"4970100000130001",}"#,
                r#"pan=4970100000130001"#,
            ],
        ),
        ("malformed_json", "", &[""]),
    ];
    for (code, secret, bodies) in cases {
        for body in *bodies {
            let reply = v.tokenize_body(&key, body).await;
            assert_eq!(
                reply.status,
                StatusCode::BAD_REQUEST,
                "{body}: {}",
                reply.text()
            );
            assert_eq!(reply.code(), *code, "{body}: {}", reply.text());
            if !secret.is_empty() {
                assert_not_echoed(&reply.body, &[secret], body);
            }
        }
    }
    let rows: i64 = v.scalar("SELECT count(*) FROM tokens", []);
    assert_eq!(rows, 0, "a refused request stored something");

    // Deeply nested, oversized, wrong content type.
    let nested = format!(
        "{{\"pan\":{}\"4970100000130001\"{}}}",
        "[".repeat(200),
        "]".repeat(200)
    );
    let reply = v.tokenize_body(&key, &nested).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_not_echoed(&reply.body, &["4970100000130001"], "nested");

    let huge = format!(
        r#"{{"pan":"4970100000130001","x":"{}"}}"#,
        "9".repeat(64 * 1024)
    );
    let reply = v.tokenize_body(&key, &huge).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.code(), "payload_too_large");
    assert_not_echoed(&reply.body, &["4970100000130001"], "huge");

    let reply = v
        .http
        .post(format!("{}/v1/tokens", v.base))
        .bearer_auth(&key)
        .header("content-type", "text/plain")
        .body(r#"{"pan":"4970100000130001"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_not_echoed(
        &reply.bytes().await.unwrap(),
        &["4970100000130001"],
        "text/plain",
    );

    // Detokenize purposes that could smuggle a card number into the audit log.
    let token = v.token_for(&key, "4242424242424242").await;
    for purpose in [
        r#"{"purpose":"payout 4970100000130001"}"#,
        r#"{"purpose":"4970-1000-0013-0001"}"#,
        r#"{"purpose":""}"#,
        r#"{"purpose":4970100000130001}"#,
        r#"{"purpose":"ok","pan":"4970100000130001"}"#,
    ] {
        let reply = v
            .call(
                Method::POST,
                &format!("/v1/tokens/{token}/detokenize"),
                Some(&key),
                Some(purpose),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{purpose}");
        assert_not_echoed(&reply.body, &["4970100000130001"], purpose);
    }

    // Card numbers in the path and query string: 404, not echoed, not logged.
    for path in [
        "/v1/tokens/4970100000130001",
        "/v1/tokens/4970100000130001/detokenize",
        "/v1/4970100000130001",
        "/v1/tokens?pan=4970100000130001",
    ] {
        let reply = v.call(Method::GET, path, Some(&key), None).await;
        assert!(reply.status.is_client_error(), "{path}: {}", reply.status);
        assert_not_echoed(&reply.body, &["4970100000130001"], path);
    }

    // None of it reached the logs or the audit trail.
    assert_not_echoed(&logs(), &["4970100000130001"], "logs");
    let audit: Vec<String> = v
        .raw_db()
        .prepare("SELECT coalesce(purpose,'') || coalesce(token,'') || coalesce(detail,'') FROM audit_events")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_not_echoed(
        audit.join("\n").as_bytes(),
        &["4970100000130001"],
        "audit log",
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let v = TestVault::spawn().await;
    let reply = v.call(Method::GET, "/nope", None, None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.code(), "route_not_found");
    let reply = v.call(Method::PUT, "/v1/tokens", None, None).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.code(), "method_not_allowed");
    let reply = v.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = v.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["audit"], "ok");
    let reply = v.call(Method::GET, "/metrics", None, None).await;
    assert!(
        reply
            .text()
            .contains("vault_http_requests_total{route=\"/readyz\",status=\"200\"} 1")
    );
}

/// A purpose is stored in the audit log: no card number may ride in it, however it is written.
#[tokio::test]
async fn a_purpose_holds_at_most_twelve_digits() {
    let (v, key, token) = TestVault::with_token("4242424242424242").await;
    let path = format!("/v1/tokens/{token}/detokenize");
    for purpose in [
        "card 4242.4242.4242.4242",
        "4 2 4 2 4 2 4 2 4 2 4 2 4",
        "payout 1234567890123",
        "a1b2c3d4e5f6g7h8i9j0k1l2m3",
    ] {
        let body = serde_json::json!({ "purpose": purpose }).to_string();
        let reply = v.call(Method::POST, &path, Some(&key), Some(&body)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{purpose}");
        assert_eq!(reply.code(), "invalid_request");
        assert_not_echoed(&reply.body, &[purpose], purpose);
    }
    for purpose in ["payout:pay_4hd2YB17t1M2nfryktLKzE", "order 123456789012"] {
        let body = serde_json::json!({ "purpose": purpose }).to_string();
        let reply = v.call(Method::POST, &path, Some(&key), Some(&body)).await;
        assert_eq!(reply.status, StatusCode::OK, "{purpose}: {}", reply.text());
    }
    let stored: i64 = v.scalar(
        "SELECT count(*) FROM audit_events WHERE purpose LIKE '%4242%' OR purpose LIKE '%1234567890123%'",
        [],
    );
    assert_eq!(stored, 0);
}

/// Issue 12 §2: an error names the field (`error.param`) and the rule, in words: never a Rust
/// type name, never the value; a 403 names the scope it lacks.
#[tokio::test]
async fn errors_name_the_field_and_the_rule_in_words() {
    let (v, key, token) = TestVault::with_token("4242424242424242").await;
    let rust_types = [
        "u8", "u16", "u32", "u64", "usize", "i64", "isize", "f64", "bool",
    ];
    let detokenize = format!("/v1/tokens/{token}/detokenize");
    let cases: &[(&str, &str, &str)] = &[
        ("/v1/tokens", r#"{}"#, "pan"),
        (
            "/v1/tokens",
            r#"{"pan":"4242424242424242","exp_month":"x","exp_year":2030}"#,
            "exp_month",
        ),
        (
            "/v1/tokens",
            r#"{"pan":"4242424242424242","exp_month":300,"exp_year":2030}"#,
            "exp_month",
        ),
        (
            "/v1/tokens",
            r#"{"pan":"4242424242424242","exp_month":13,"exp_year":2030}"#,
            "exp_month",
        ),
        (
            "/v1/tokens",
            r#"{"pan":"4242424242424242","exp_month":1,"exp_year":1999}"#,
            "exp_year",
        ),
        (
            "/v1/tokens",
            r#"{"pan":"4242424242424242","exp_month":1}"#,
            "exp_year",
        ),
        (
            "/v1/tokens",
            r#"{"pan":"4242424242424242","ttl_seconds":-1}"#,
            "ttl_seconds",
        ),
        (
            "/v1/tokens",
            r#"{"pan":"4242424242424242","ttl_seconds":0}"#,
            "ttl_seconds",
        ),
        ("/v1/tokens", r#"{"pan":"4242424242424243"}"#, "pan"),
        (&detokenize, r#"{}"#, "purpose"),
        (&detokenize, r#"{"purpose":7}"#, "purpose"),
        (&detokenize, r#"{"purpose":""}"#, "purpose"),
    ];
    for (path, body, param) in cases {
        let reply = v.call(Method::POST, path, Some(&key), Some(body)).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            reply.text()
        );
        let json = reply.json();
        assert_eq!(json["error"]["param"], *param, "{body}: {json}");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(message.contains(param), "{body}: {message}");
        for word in message.split(|c: char| !c.is_ascii_alphanumeric()) {
            assert!(
                !rust_types.contains(&word),
                "{body}: a Rust type in {message}"
            );
        }
        assert!(
            !reply.text().contains("2030") && !reply.text().contains("300"),
            "{body}: echoed"
        );
    }

    // A scope the key lacks is named.
    let reader = v.client("acme", "tokens:read").await;
    let reply = v
        .call(
            Method::POST,
            &detokenize,
            Some(&reader),
            Some(r#"{"purpose":"payout"}"#),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.json()["error"]["param"], "tokens:detokenize");
}

/// Issue 13 §1: every answer, whatever made it (a handler, an extractor, a fallback, axum's own
/// body limit), leaves with `Cache-Control: no-store` and a request id, and the error ones in the
/// vault's body.
#[tokio::test]
async fn every_answer_carries_no_store_and_a_request_id() {
    let v = TestVault::spawn().await;
    let key = v.client("acme", ALL_SCOPES).await;
    let huge = format!(r#"{{"pan":"{}"}}"#, "9".repeat(1024 * 1024));
    for (method, path, key, body, status, code) in [
        (Method::GET, "/healthz", None, None, 200, None),
        (Method::GET, "/metrics", None, None, 200, None),
        (
            Method::GET,
            "/v1/clients/me",
            None,
            None,
            401,
            Some("unauthorized"),
        ),
        (
            Method::GET,
            "/nowhere",
            None,
            None,
            404,
            Some("route_not_found"),
        ),
        (
            Method::PUT,
            "/v1/tokens",
            Some(&key),
            None,
            405,
            Some("method_not_allowed"),
        ),
        (
            Method::POST,
            "/v1/tokens",
            Some(&key),
            Some("{"),
            400,
            Some("malformed_json"),
        ),
        (
            Method::POST,
            "/v1/tokens",
            Some(&key),
            Some(huge.as_str()),
            413,
            Some("payload_too_large"),
        ),
    ] {
        let reply = v
            .call(method.clone(), path, key.map(String::as_str), body)
            .await;
        let what = format!("{method} {path}");
        assert_eq!(reply.status.as_u16(), status, "{what}: {}", reply.text());
        assert_eq!(reply.headers["cache-control"], "no-store", "{what}");
        let id = reply.headers["x-request-id"].to_str().unwrap();
        assert!(id.starts_with("req_"), "{what}: {id}");
        if let Some(code) = code {
            assert_eq!(reply.code(), code, "{what}");
        }
    }
}

/// Digits are valid method characters: a card number sent as the HTTP method is answered (405 or
/// 404) and logged as `other`, never as sent.
#[tokio::test]
async fn a_card_number_sent_as_the_method_never_reaches_the_log() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let v = TestVault::spawn().await;
    let addr = v.base.trim_start_matches("http://").to_owned();
    for path in ["/v1/tokens", "/nowhere"] {
        let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let request =
            format!("4970100000130001 {path} HTTP/1.1\r\nHost: v\r\nConnection: close\r\n\r\n");
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        conn.read_to_end(&mut answer).await.unwrap();
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 4"), "{path}: {text}");
        assert_not_echoed(&answer, &["4970100000130001"], "answer");
    }
    let logs = logs();
    assert_not_echoed(&logs, &["4970100000130001"], "logs");
    assert!(
        String::from_utf8_lossy(&logs).contains(r#""method":"other""#),
        "the request was not logged"
    );
}
