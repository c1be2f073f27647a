//! The demo platform's checkout page, on the app port beside its webhook receiver: what a
//! platform would build to take a recipient's card without ever touching it. `GET /` opens a
//! collect session at the vault (the platform's backend, with its vault key) and serves a page
//! that frames the vault's form with `/collect.js`; the page hands the token to `POST /pay`,
//! where the backend reads the session from the vault itself (it trusts the vault, not the
//! browser, for the token) and pays out through the proxy, once per session.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::Printer;

/// What the page's backend needs: the vault and proxy URLs and the app's keys for both.
#[derive(Clone, Debug)]
pub(crate) struct Shop {
    /// `https://127.0.0.1:<app port>`: the one origin the sessions allow to frame the form.
    pub(crate) origin: String,
    pub(crate) vault_url: String,
    pub(crate) vault_key: String,
    pub(crate) proxy_url: String,
    pub(crate) proxy_key: String,
    pub(crate) http: reqwest::Client,
    pub(crate) out: Printer,
}

/// The page and its payout route.
pub(crate) fn routes(shop: Shop) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/pay", post(pay))
        .with_state(Arc::new(shop))
}

async fn page(State(shop): State<Arc<Shop>>) -> Response {
    let opened = shop
        .http
        .post(format!("{}/v1/collect_sessions", shop.vault_url))
        .bearer_auth(&shop.vault_key)
        .json(&json!({"allowed_origins": [shop.origin], "metadata": {"order": "devstack-shop"}}))
        .send()
        .await;
    let session: Value = match opened {
        Ok(r) if r.status() == StatusCode::CREATED => r.json().await.unwrap_or(Value::Null),
        Ok(r) => {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            return failure(&format!(
                "the vault refused the collect session ({status}): {body}"
            ));
        }
        Err(e) => return failure(&format!("the vault is unreachable: {e}")),
    };
    shop.out.line(format!(
        "  [shop] opened collect session {} for the checkout page",
        session["id"].as_str().unwrap_or("?")
    ));
    Html(checkout(&shop.vault_url, &session)).into_response()
}

fn failure(why: &str) -> Response {
    (StatusCode::BAD_GATEWAY, format!("devstack shop: {why}\n")).into_response()
}

/// The checkout page. Its inline script is the platform's own (this page is not the vault's,
/// and holds no card number): it mounts the form and forwards the token to its backend.
fn checkout(vault: &str, session: &Value) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>devstack shop: payout card</title>
<style>body{{font:16px/1.4 system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem}}#card{{border:1px solid #ddd;border-radius:8px}}</style>
</head><body>
<h1>devstack shop</h1>
<p>Where should we send your 100.00 RUB? The card form below is the vault's page in a frame:
this shop never sees the number, only a token. Try 4242 4242 4242 4242, any future expiry.</p>
<div id="card"></div>
<p id="result"></p>
<script src="{vault}/collect.js"></script>
<script>
var session = {id};
VaultCollect.mount(document.getElementById('card'), {{
  url: {url},
  clientSecret: {secret},
  onToken: function (card) {{
    var result = document.getElementById('result');
    result.textContent = 'Card ' + card.brand + ' ending ' + card.last4 + ' saved as ' + card.token + '; paying out…';
    fetch('/pay', {{method: 'POST', headers: {{'Content-Type': 'application/json'}}, body: JSON.stringify({{session: session}})}})
      .then(function (r) {{ return r.json(); }})
      .then(function (p) {{
        var saved = 'Card ' + card.brand + ' ending ' + card.last4 + ': ';
        result.textContent = saved + (p.id ? 'payout ' + p.id + ' ' + p.status + ' (the devstack console shows its webhooks)' : 'payout failed: ' + JSON.stringify(p));
      }});
  }},
  onError: function (e) {{ document.getElementById('result').textContent = 'The form said: ' + e.code; }}
}});
</script>
</body></html>"#,
        id = session["id"],
        url = session["url"],
        secret = session["client_secret"],
    )
}

/// `POST /pay {session}`: the backend reads the completed session at the vault and pays its
/// token out, with the session id as the idempotency key (a second click pays nothing more).
async fn pay(State(shop): State<Arc<Shop>>, Json(body): Json<Value>) -> Response {
    let Some(id) = body["session"]
        .as_str()
        .filter(|id| id.starts_with("cs_") && id.len() < 100)
    else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "session: the collect session id (cs_…) is required"})),
        )
            .into_response();
    };
    let read = async {
        let r = shop
            .http
            .get(format!("{}/v1/collect_sessions/{id}", shop.vault_url))
            .bearer_auth(&shop.vault_key)
            .send()
            .await?;
        r.json::<Value>().await
    }
    .await;
    let session = match read {
        Ok(s) if s["state"] == "completed" => s,
        Ok(s) => {
            return (
                StatusCode::CONFLICT,
                Json(json!({"error": format!("the session is {}, not completed", s["state"])})),
            )
                .into_response();
        }
        Err(e) => {
            return failure(&format!("reading the session at the vault: {e}"));
        }
    };
    let created = shop
        .http
        .post(format!("{}/v1/payouts", shop.proxy_url))
        .bearer_auth(&shop.proxy_key)
        .header("Idempotency-Key", format!("shop-{id}"))
        .json(&json!({
            "card_token": session["token"],
            "amount": 10_000,
            "currency": "RUB",
            "recipient": {"full_name": "Ivan Petrov"},
            "metadata": {"order": "devstack-shop"},
            "confirm": "auto",
        }))
        .send()
        .await;
    match created {
        Ok(r) => {
            let status = r.status();
            let payout: Value = r.json().await.unwrap_or(Value::Null);
            shop.out.line(format!(
                "  [shop] paid out to {} (card ending {}): payout {} {}",
                session["token"].as_str().unwrap_or("?"),
                session["card"]["last4"].as_str().unwrap_or("?"),
                payout["id"].as_str().unwrap_or("?"),
                payout["status"].as_str().unwrap_or("?"),
            ));
            (status, Json(payout)).into_response()
        }
        Err(e) => failure(&format!("the proxy is unreachable: {e}")),
    }
}
