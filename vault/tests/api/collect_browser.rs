//! The card form in a real browser (headless Chromium over WebDriver, `testkit::browser`): a
//! platform page on one loopback origin embeds the form from the vault's origin with
//! `/collect.js`, a card is typed into the frame and the platform gets a token, and nothing but
//! the vault's own frame ever holds the card number; a page of another origin cannot frame the
//! form at all; the standalone page (a payout link) takes one card and then says it is used;
//! and the form is screenshotted at desktop and phone widths in English and Russian.
//!
//! Without chromedriver and Chromium these say `SKIPPED:` and pass; CI sets `REQUIRE_BROWSER=1`,
//! which makes a missing browser a failure.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::{get, post};
use fantoccini::Locator;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::browser::{self, Browser, DEADLINE};

use crate::helpers::{TestVault, assert_no_pan};

const PAN: &str = "4242424242424242";
/// How long a page may take to react: a hang guard, answered as soon as the page is there.
const PATIENCE: Duration = DEADLINE;

/// A platform's web server: its page embeds the vault's form, and its backend records the
/// tokens the page posts to it, as a real platform's would.
struct Shop {
    origin: String,
    /// What `POST /token` received, body by body.
    received: Arc<Mutex<Vec<String>>>,
    page: Arc<Mutex<String>>,
}

impl Shop {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let page = Arc::new(Mutex::new(String::new()));
        let app = Router::new()
            .route(
                "/",
                get(|State((page, _)): State<ShopState>| async move {
                    Html(page.lock().unwrap().clone())
                }),
            )
            .route(
                "/token",
                post(
                    |State((_, received)): State<ShopState>, body: String| async move {
                        received.lock().unwrap().push(body);
                        StatusCode::NO_CONTENT
                    },
                ),
            )
            .with_state((page.clone(), received.clone()));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            origin: format!("http://127.0.0.1:{}", addr.port()),
            received,
            page,
        }
    }

    /// The same server under another origin (`localhost` instead of `127.0.0.1`): what an
    /// attacker's page is to the session, which allows only the first.
    fn other_origin(&self) -> String {
        self.origin.replace("127.0.0.1", "localhost")
    }

    /// The checkout page embedding `session` (its `url` and `client_secret`). It records every
    /// message it receives and whether it could reach into the frame, so a test can scan them.
    fn show(&self, vault: &str, session: &Value, locale: &str) {
        let page = format!(
            r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop checkout</title></head>
<body><h1>Shop checkout</h1><div id="card"></div><pre id="result"></pre><pre id="errors"></pre>
<script src="{vault}/collect.js"></script>
<script>
window.seen = [];
window.addEventListener('message', function (e) {{ window.seen.push({{origin: e.origin, data: e.data}}); }});
var mounted = VaultCollect.mount(document.getElementById('card'), {{
  url: {url}, clientSecret: {secret}, locale: {locale},
  onReady: function () {{ document.body.setAttribute('data-ready', 'yes'); }},
  onToken: function (card) {{
    document.getElementById('result').textContent = JSON.stringify(card);
    fetch('/token', {{method: 'POST', body: JSON.stringify(card)}});
  }},
  onError: function (e) {{ document.getElementById('errors').textContent += e.code + '\n'; }}
}});
window.reachIn = function () {{
  try {{ return mounted.frame.contentDocument ? mounted.frame.contentDocument.body.innerHTML : 'blocked: no document'; }}
  catch (e) {{ return 'blocked: ' + e.name; }}
}};
</script></body></html>"#,
            url = session["url"],
            secret = session["client_secret"],
            locale = json!(locale),
        );
        *self.page.lock().unwrap() = page;
    }
}

type ShopState = (Arc<Mutex<String>>, Arc<Mutex<Vec<String>>>);

/// A session `acme` opened through the API, framed by `origins`.
async fn open(v: &TestVault, key: &str, body: Value) -> Value {
    let reply = v
        .call(
            Method::POST,
            "/v1/collect_sessions",
            Some(key),
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    reply.json()
}

async fn value_of(b: &Browser, css: &str) -> String {
    b.client()
        .find(Locator::Css(css))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default()
}

async fn text_of(b: &Browser, css: &str) -> String {
    b.wait_for(css, PATIENCE)
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Types a card into the form the browser is in (the frame, or the standalone page).
async fn type_card(b: &Browser, pan: &str, expiry: &str) {
    let number = b.wait_for("#card-number", PATIENCE).await.unwrap();
    number.send_keys(pan).await.unwrap();
    b.client()
        .find(Locator::Css("#card-expiry"))
        .await
        .unwrap()
        .send_keys(expiry)
        .await
        .unwrap();
}

/// Waits until `script` (a JS expression) is truthy in the current page or frame.
async fn until(b: &Browser, script: &str) {
    let check = format!("return !!({script});");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let done = b.client().execute(&check, vec![]).await.unwrap();
        if done == Value::Bool(true) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the page never got to `{script}`"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_platform_page_embeds_the_form_and_receives_only_a_token() {
    let Some(b) = browser::launch().await.unwrap() else {
        return;
    };
    let mut v = TestVault::spawn().await;
    let key = v.client("acme", "collect:create,tokens:read").await;
    let shop = Shop::start().await;
    let session = open(&v, &key, json!({"allowed_origins": [shop.origin]})).await;
    shop.show(&v.base, &session, "en");

    b.client().goto(&format!("{}/", shop.origin)).await.unwrap();
    b.wait_for("body[data-ready=yes]", PATIENCE).await.unwrap();
    let reach = b
        .client()
        .execute("return window.reachIn();", vec![])
        .await
        .unwrap();
    assert!(
        reach.as_str().unwrap().starts_with("blocked"),
        "the platform's page cannot read the frame: {reach}"
    );

    b.client().enter_frame(0).await.unwrap();
    type_card(&b, PAN, "1229").await;
    assert_eq!(value_of(&b, "#card-number").await, "4242 4242 4242 4242");
    assert_eq!(value_of(&b, "#card-expiry").await, "12/29");
    assert_eq!(text_of(&b, "#card-brand").await.to_lowercase(), "visa");
    b.client()
        .find(Locator::Css("#submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_for("#done:not([hidden])", PATIENCE).await.unwrap();
    assert!(text_of(&b, "#done-text").await.contains("4242"));
    assert_eq!(
        value_of(&b, "#card-number").await,
        "",
        "the form forgets the card"
    );
    b.client().enter_parent_frame().await.unwrap();

    b.wait_for("#result:not(:empty)", PATIENCE).await.unwrap();
    let card: Value = serde_json::from_str(&text_of(&b, "#result").await).unwrap();
    let token = card["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("tok_"), "{card}");
    assert_eq!(card["last4"], "4242");
    assert_eq!(card["brand"], "visa");
    assert_eq!(
        card.as_object().unwrap().len(),
        3,
        "token, last4, brand: {card}"
    );
    until(&b, "document.getElementById('errors').textContent === ''").await;

    // The platform's backend got the token from its page, and the vault agrees.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while shop.received.lock().unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the shop's backend got no token"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let posted: Value = serde_json::from_str(&shop.received.lock().unwrap()[0]).unwrap();
    assert_eq!(posted["token"], token.as_str());
    let id = session["id"].as_str().unwrap();
    let state = v
        .call(
            Method::GET,
            &format!("/v1/collect_sessions/{id}"),
            Some(&key),
            None,
        )
        .await
        .json();
    assert_eq!(state["state"], "completed");
    assert_eq!(state["token"], token.as_str());

    // Nothing the platform's origin holds, logged or sent contains the card number: its DOM,
    // the messages it received, the console, and every request its document made.
    let dom = b
        .client()
        .execute(
            "return document.documentElement.outerHTML + JSON.stringify(window.seen);",
            vec![],
        )
        .await
        .unwrap();
    assert_no_pan(
        dom.as_str().unwrap().as_bytes(),
        &[PAN],
        "the platform's page",
    );
    let console = b.console_log().await.unwrap().join("\n");
    assert_no_pan(console.as_bytes(), &[PAN], "the console");
    let network = b.network_log().await.unwrap();
    let (shop_events, vault_frame_events): (Vec<&String>, Vec<&String>) = network
        .iter()
        .filter(|line| line.contains("\"documentURL\""))
        .partition(|line| {
            let event: Value = serde_json::from_str(line).unwrap();
            event["params"]["documentURL"]
                .as_str()
                .unwrap_or_default()
                .starts_with(&format!("{}/", shop.origin))
        });
    assert!(!shop_events.is_empty(), "the shop's requests are logged");
    for event in &shop_events {
        assert_no_pan(event.as_bytes(), &[PAN], "a request of the platform's page");
    }
    // The scan can see a card number: the one request that carries it is the frame's own,
    // to the vault.
    let carrying: Vec<Value> = vault_frame_events
        .iter()
        .filter(|line| shared::scan::contains_pan_any_encoding(line.as_bytes(), &pan()))
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .collect();
    assert!(!carrying.is_empty(), "the frame's submission is in the log");
    for event in &carrying {
        let url = event["params"]["request"]["url"]
            .as_str()
            .unwrap_or_default();
        assert_eq!(url, format!("{}/collect/{id}/submit", v.base), "{event}");
    }

    b.close().await.unwrap();
    v.stop().await;
    assert_no_pan(&crate::helpers::logs(), &[PAN], "the vault's log");
    v.assert_database_holds_no_pan(&[PAN]);
}

fn pan() -> shared::Pan {
    shared::Pan::parse(PAN).unwrap()
}

#[tokio::test]
async fn a_page_of_another_origin_cannot_frame_the_form() {
    let Some(b) = browser::launch().await.unwrap() else {
        return;
    };
    let v = TestVault::spawn().await;
    let key = v.client("acme", "collect:create,tokens:read").await;
    let shop = Shop::start().await;
    let session = open(&v, &key, json!({"allowed_origins": [shop.origin]})).await;
    shop.show(&v.base, &session, "en");

    // The same page from an origin the session does not list: the browser refuses the frame
    // (CSP frame-ancestors), so the form never loads, never says it is ready, and no card can
    // be typed into it.
    b.client()
        .goto(&format!("{}/", shop.other_origin()))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let console = b.console_log().await.unwrap().join("\n");
        if console.contains("frame-ancestors") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Chromium never refused the frame; console: {console}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = b
        .client()
        .execute(
            "return [document.body.getAttribute('data-ready'), document.getElementById('result').textContent, JSON.stringify(window.seen)];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        ready,
        json!([null, "", "[]"]),
        "no message came from the form"
    );
    b.client().enter_frame(0).await.unwrap();
    let inside = b
        .client()
        .find_all(Locator::Css("#card-number"))
        .await
        .unwrap();
    assert!(inside.is_empty(), "the refused frame holds no form");
    b.client().enter_parent_frame().await.unwrap();

    let id = session["id"].as_str().unwrap();
    let state = v
        .call(
            Method::GET,
            &format!("/v1/collect_sessions/{id}"),
            Some(&key),
            None,
        )
        .await
        .json();
    assert_eq!(state["state"], "open", "nothing was submitted");
    b.close().await.unwrap();
}

#[tokio::test]
async fn a_standalone_link_takes_one_card_and_then_says_it_is_used() {
    let Some(b) = browser::launch().await.unwrap() else {
        return;
    };
    let v = TestVault::spawn().await;
    let key = v.client("acme", "collect:create,tokens:read").await;
    let session = open(&v, &key, json!({"ttl_seconds": 86_400})).await;
    let url = session["url"].as_str().unwrap();
    let secret = session["client_secret"].as_str().unwrap();

    b.client()
        .goto(&format!("{url}#secret={secret}"))
        .await
        .unwrap();
    b.wait_for("#collect-form:not([hidden])", PATIENCE)
        .await
        .unwrap();
    until(&b, "location.hash === ''").await;
    let address = b.client().current_url().await.unwrap();
    assert!(
        !address.as_str().contains(secret),
        "the secret leaves the address bar: {address}"
    );

    // A typo is caught on the page, in words, before anything is sent.
    type_card(&b, "4242424242424241", "1229").await;
    b.client()
        .find(Locator::Css("#submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(text_of(&b, "#card-number-error").await.contains("typo"));
    let number = b.client().find(Locator::Css("#card-number")).await.unwrap();
    number.clear().await.unwrap();
    number.send_keys(PAN).await.unwrap();
    b.client()
        .find(Locator::Css("#submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_for("#done:not([hidden])", PATIENCE).await.unwrap();

    // Opened again (afresh, as from the message it came in), the link says it is used and
    // offers no form.
    b.client().goto("about:blank").await.unwrap();
    b.client()
        .goto(&format!("{url}#secret={secret}"))
        .await
        .unwrap();
    b.wait_for("#gone:not([hidden])", PATIENCE).await.unwrap();
    assert!(text_of(&b, "#gone-heading").await.contains("used"));
    let form_hidden = b
        .client()
        .execute(
            "return document.getElementById('collect-form').hidden;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(form_hidden, Value::Bool(true));
    // Without its secret, a link is refused on the page itself.
    let other = open(&v, &key, json!({})).await;
    b.client()
        .goto(other["url"].as_str().unwrap())
        .await
        .unwrap();
    b.wait_for("#gone:not([hidden])", PATIENCE).await.unwrap();
    assert!(
        text_of(&b, "#gone-heading")
            .await
            .contains("cannot be used")
    );
    // A framed session's form opened on its own page with its (leaked) secret takes no card:
    // only the platform's page may hand a framed form its secret.
    let framed = open(
        &v,
        &key,
        json!({"allowed_origins": ["https://shop.example"]}),
    )
    .await;
    b.client().goto("about:blank").await.unwrap();
    b.client()
        .goto(&format!(
            "{}#secret={}",
            framed["url"].as_str().unwrap(),
            framed["client_secret"].as_str().unwrap()
        ))
        .await
        .unwrap();
    b.wait_for("#gone:not([hidden])", PATIENCE).await.unwrap();
    assert!(
        text_of(&b, "#gone-heading")
            .await
            .contains("cannot be used")
    );
    until(&b, "location.hash === ''").await;
    // A malformed escape in the link still leaves the address bar before anything fails, and
    // the secret beside it is still read.
    let link = open(&v, &key, json!({})).await;
    let (link_url, link_secret) = (
        link["url"].as_str().unwrap(),
        link["client_secret"].as_str().unwrap(),
    );
    b.client().goto("about:blank").await.unwrap();
    b.client()
        .goto(&format!("{link_url}#x=%E0%A4%A&secret={link_secret}"))
        .await
        .unwrap();
    b.wait_for("#collect-form:not([hidden])", PATIENCE)
        .await
        .unwrap();
    until(&b, "location.hash === ''").await;
    let address = b.client().current_url().await.unwrap();
    assert!(!address.as_str().contains(link_secret), "{address}");
    b.close().await.unwrap();
}

#[tokio::test]
async fn the_form_is_screenshotted_at_desktop_and_phone_widths_in_both_languages() {
    let Some(b) = browser::launch().await.unwrap() else {
        return;
    };
    let v = TestVault::spawn().await;
    let key = v.client("acme", "collect:create,tokens:read").await;
    let session = open(&v, &key, json!({"require_cardholder_name": true})).await;
    let url = session["url"].as_str().unwrap();
    let secret = session["client_secret"].as_str().unwrap();
    let dir = browser::artifacts_dir();
    for (locale, label) in [("en", "Card number"), ("ru", "Номер карты")] {
        for (width, height) in [(1280, 720), (320, 640)] {
            b.set_viewport(width, height).await.unwrap();
            // A fresh load each time: from the same page, only the fragment would change.
            b.client().goto("about:blank").await.unwrap();
            b.client()
                .goto(&format!("{url}#secret={secret}&locale={locale}"))
                .await
                .unwrap();
            b.wait_for("#collect-form:not([hidden])", PATIENCE)
                .await
                .unwrap();
            assert_eq!(text_of(&b, "label[for=card-number]").await, label);
            // The name field is asked for, and at 320 px nothing is cut off or scrolls sideways.
            assert!(
                b.client()
                    .find(Locator::Css("#card-name"))
                    .await
                    .unwrap()
                    .is_displayed()
                    .await
                    .unwrap()
            );
            let fits = b
                .client()
                .execute(
                    "return document.documentElement.scrollWidth <= window.innerWidth;",
                    vec![],
                )
                .await
                .unwrap();
            assert_eq!(fits, Value::Bool(true), "{locale} at {width} px");
            b.client()
                .find(Locator::Css("#card-number"))
                .await
                .unwrap()
                .send_keys("2200 1234 5678 901")
                .await
                .unwrap();
            assert_eq!(text_of(&b, "#card-brand").await.to_lowercase(), "мир");
            let path = dir.join(format!("collect-{locale}-{width}.png"));
            b.screenshot_to(&path).await.unwrap();
            let png = std::fs::read(&path).unwrap();
            assert!(png.starts_with(b"\x89PNG"), "{}", path.display());
        }
    }
    b.close().await.unwrap();
}
