//! Every route against every scope: 401 without a key, 403 with the wrong scope, 404 for
//! another tenant's token exactly as for a missing one; every denial audited.

use reqwest::{Method, StatusCode};
use vault::auth::Scope;

use crate::helpers::{ALL_SCOPES, Reply, TestVault};

struct Route {
    method: Method,
    path: &'static str,
    body: Option<&'static str>,
    scope: Scope,
    action: &'static str,
}

fn routes() -> Vec<Route> {
    vec![
        Route {
            method: Method::POST,
            path: "/v1/tokens",
            body: Some(r#"{"pan":"4242424242424242"}"#),
            scope: Scope::TokensCreate,
            action: "token.create",
        },
        Route {
            method: Method::GET,
            path: "/v1/tokens/{token}",
            body: None,
            scope: Scope::TokensRead,
            action: "token.read",
        },
        Route {
            method: Method::POST,
            path: "/v1/tokens/{token}/detokenize",
            body: Some(r#"{"purpose":"payout"}"#),
            scope: Scope::TokensDetokenize,
            action: "token.detokenize",
        },
        Route {
            method: Method::DELETE,
            path: "/v1/tokens/{token}",
            body: None,
            scope: Scope::TokensDelete,
            action: "token.delete",
        },
    ]
}

fn audit_count(v: &TestVault, action: &str, outcome: &str) -> i64 {
    v.scalar(
        "SELECT count(*) FROM audit_events WHERE action = ?1 AND outcome = ?2",
        [action, outcome],
    )
}

async fn call(v: &TestVault, route: &Route, token: &str, key: Option<&str>) -> Reply {
    v.call(
        route.method.clone(),
        &route.path.replace("{token}", token),
        key,
        route.body,
    )
    .await
}

#[tokio::test]
async fn every_route_requires_a_valid_key() {
    let (mut v, _, token) = TestVault::with_token("5555555555554444").await;
    let (revoked_id, revoked_key) = v.client_with_id("acme", ALL_SCOPES).await;
    v.admin.revoke_client(&revoked_id).await.unwrap();

    for route in routes() {
        for key in [
            None,
            Some("vk_not-a-real-key"),
            Some(""),
            Some(revoked_key.as_str()),
        ] {
            let before = audit_count(&v, "auth.fail", "denied");
            let reply = call(&v, &route, &token, key).await;
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "{} {}",
                route.method,
                route.path
            );
            assert_eq!(reply.code(), "unauthorized");
            // A revoked client's use is audited at once, one event each; missing and unknown
            // keys are counted and audited once per interval (an anonymous flood must not
            // cost a durable write per request).
            let expected = before + i64::from(key == Some(revoked_key.as_str()));
            assert_eq!(audit_count(&v, "auth.fail", "denied"), expected);
        }
    }
    // A revoked key's failures name the client.
    let actor: String = v.scalar(
        "SELECT actor FROM audit_events WHERE action = 'auth.fail' ORDER BY seq DESC LIMIT 1",
        [],
    );
    assert_eq!(actor, revoked_id.as_str());

    // At shutdown (or every limits.report_interval_seconds) the tallies become one event per
    // reason and address, with the count.
    v.stop().await;
    let details: Vec<String> = v
        .events("auth.fail")
        .into_iter()
        .filter(|(_, actor, _)| actor == "anonymous")
        .map(|(_, _, d)| d.unwrap())
        .collect();
    assert_eq!(details.len(), 2, "{details:?}");
    assert!(
        details.contains(&"missing API key: 8 requests from 127.0.0.1 within 60 s".to_owned()),
        "{details:?}"
    );
    assert!(
        details.contains(&"unknown API key: 4 requests from 127.0.0.1 within 60 s".to_owned()),
        "{details:?}"
    );
}

#[tokio::test]
async fn every_route_refuses_every_other_scope() {
    let (v, owner, token) = TestVault::with_token("5555555555554444").await;

    for route in routes() {
        for scope in Scope::ALL {
            let key = v.client("acme", scope.as_str()).await;
            let before = audit_count(&v, route.action, "denied");
            let reply = call(&v, &route, &token, Some(&key)).await;
            if scope == route.scope {
                assert!(
                    reply.status.is_success(),
                    "{} {} with {}: {}",
                    route.method,
                    route.path,
                    scope.as_str(),
                    reply.status
                );
                continue;
            }
            assert_eq!(
                reply.status,
                StatusCode::FORBIDDEN,
                "{} {} with {}",
                route.method,
                route.path,
                scope.as_str()
            );
            assert_eq!(reply.code(), "forbidden");
            assert_eq!(
                audit_count(&v, route.action, "denied"),
                before + 1,
                "403 not audited"
            );
        }
        // The delete above destroyed the token: make it again for the next route.
        if route.scope == Scope::TokensDelete {
            let _ = v.token_for(&owner, "5555555555554444").await;
        }
    }
}

#[tokio::test]
async fn another_tenants_token_reads_exactly_like_a_missing_one() {
    let (v, acme, globex) = TestVault::with_two_tenants().await;
    let acme_token = v.token_for(&acme, "4242424242424242").await;
    let missing = "tok_0000000000000000000000";

    for route in routes().into_iter().filter(|r| r.path.contains("{token}")) {
        let before = audit_count(&v, route.action, "not_found");
        let other = call(&v, &route, &acme_token, Some(&globex)).await;
        let absent = call(&v, &route, missing, Some(&globex)).await;
        let garbage = call(&v, &route, "4242424242424242", Some(&globex)).await;
        assert_eq!(
            other.status,
            StatusCode::NOT_FOUND,
            "{} {}",
            route.method,
            route.path
        );
        assert_eq!(other.body, absent.body, "bodies differ");
        assert_eq!(other.body, garbage.body, "bodies differ");
        assert_eq!(other.status, absent.status);
        assert_eq!(
            audit_count(&v, route.action, "not_found"),
            before + 3,
            "404 not audited"
        );
    }
    // The token is intact for its owner.
    assert_eq!(
        v.detokenize(&acme, &acme_token).await.status,
        StatusCode::OK
    );
}

/// The scope is checked before the body is read: a client without `tokens:detokenize` posting
/// anything (even `{}` or garbage) gets 403, and the denial is audited.
#[tokio::test]
async fn scope_is_checked_before_the_body_is_read() {
    let (v, _, token) = TestVault::with_token("4242424242424242").await;
    let reader = v.client("acme", "tokens:read").await;
    for (path, action, body) in [
        (
            format!("/v1/tokens/{token}/detokenize"),
            "token.detokenize",
            "{}",
        ),
        (
            format!("/v1/tokens/{token}/detokenize"),
            "token.detokenize",
            "not json",
        ),
        ("/v1/tokens".to_owned(), "token.create", "{}"),
        ("/v1/tokens".to_owned(), "token.create", r#"{"pan":12}"#),
    ] {
        let before = audit_count(&v, action, "denied");
        let reply = v.call(Method::POST, &path, Some(&reader), Some(body)).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path} {body}");
        assert_eq!(
            audit_count(&v, action, "denied"),
            before + 1,
            "{path} {body}"
        );
    }
}

/// `GET /v1/clients/me` tells a key who it is (id, tenant, scopes), for a caller to check its
/// own configuration; without a valid key it is 401 like everything else.
#[tokio::test]
async fn a_key_can_ask_who_it_is() {
    let v = TestVault::spawn().await;
    let key = v.client("globex", "tokens:detokenize").await;
    let me = v
        .call(Method::GET, "/v1/clients/me", Some(&key), None)
        .await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text());
    let body = me.json();
    assert_eq!(body["tenant"], "globex");
    assert_eq!(body["scopes"], serde_json::json!(["tokens:detokenize"]));
    assert!(body["id"].as_str().unwrap().starts_with("cli_"));
    assert!(body.get("key_hash").is_none() && body.get("mac").is_none());
    for key in [None, Some("vk_not_a_key")] {
        let r = v.call(Method::GET, "/v1/clients/me", key, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
}

/// In production mode a client that may read card numbers but is bound to no client
/// certificate (a row from before certificate binding, say) is refused: at start, naming it,
/// and at every request if it appears later (401, audited), while bound-free clients without
/// `tokens:detokenize` work.
#[tokio::test]
async fn production_mode_refuses_an_unbound_card_reader_at_start_and_at_every_request() {
    let v = TestVault::spawn_with(|c| {
        crate::helpers::unlimited(c);
        c.mode = vault::config::Mode::Production;
        c.keys.allow_file_provider = true;
    })
    .await;
    // Made behind the command line's back (which refuses it in production).
    let (reader_id, reader) = v.client_with_id("acme", ALL_SCOPES).await;
    let app = v.client("acme", "tokens:create").await;
    let token = v.token_for(&app, "4242424242424242").await;
    let reply = v.detokenize(&reader, &token).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());
    let refused = v
        .events("auth.fail")
        .into_iter()
        .filter(|(_, actor, detail)| {
            actor == reader_id.as_str()
                && detail
                    .as_deref()
                    .is_some_and(|d| d.contains("bound to no client certificate"))
        })
        .count();
    assert_eq!(refused, 1);
    // And a vault started on this database now refuses to, naming the client.
    let e = vault::startup::Application::build(&v.config)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains(&format!("client {reader_id}")),
        "{e}"
    );
}
