//! The journal records everything, and holds the card number only inside the bodies of
//! start/init payout requests.

use serde_json::{Value, json};
use shared::Pan;
use shared::scan::contains_pan;
use testkit::http::Fetch;

use crate::helpers::{VISA, env, journal_when, payout, payout_body, session_id, webhook_count};

#[tokio::test]
async fn journal_holds_the_pan_only_in_start_and_init_bodies() {
    let mut e = env().await;
    let p = &e.partner;
    let mir = "2200000000000004";

    // A card sent with create (allowed by the API) is masked in the journal.
    let mut create = payout_body("payout_details", mir, 700, "Ivan");
    create["metadata"] = json!("order-1");
    let (_, b) = p.post("/api/v2/session/create", create).await;
    let id = session_id(&b);
    let (s, b) = p
        .post("/api/v2/session/start/payout", json!({"session_id": id}))
        .await;
    assert_eq!(s, 200, "{b}");
    e.hooks.expect("ready_to_confirm").await;
    p.on_session("v2", "confirm", &id).await;
    e.hooks.expect("payment_finished").await;

    let mut start = payout_body("payment_method", VISA, 100, "Ivan");
    let id2 = p.create("v1").await;
    start["session_id"] = json!(id2);
    p.post("/api/v1/session/start/payout", start).await;
    e.hooks.expect("ready_to_confirm").await;
    p.init("v2", payout_body("payout_details", VISA, 100, "I"))
        .await;
    e.hooks.expect("ready_to_confirm").await;
    // A PAN sent where none belongs: to an unknown path, and to status.
    p.post(
        "/api/v2/session/nonsense",
        payout_body("payout_details", VISA, 1, "I"),
    )
    .await;
    p.post(
        "/api/v2/session/status",
        json!({"session_id": id, "note": VISA}),
    )
    .await;

    journal_when(&e.sandbox, |j| webhook_count(j) == 4).await;
    // Read it the way a test in another process would: over HTTP.
    let journal: Value = p
        .http
        .get(format!("{}/__sandbox/journal", p.base))
        .json_body()
        .await;
    let entries = journal["entries"].as_array().unwrap();
    let pans = [Pan::parse(VISA).unwrap(), Pan::parse(mir).unwrap()];
    let has_pan = |text: &str| pans.iter().any(|pan| contains_pan(text.as_bytes(), pan));

    let (mut requests, mut webhooks, mut carrying) = (0, 0, 0);
    for entry in entries {
        match entry["kind"].as_str().unwrap() {
            "request" => {
                requests += 1;
                let path = entry["path"].as_str().unwrap();
                let body = entry["body"].as_str().unwrap();
                assert!(
                    !has_pan(entry["response"].as_str().unwrap()),
                    "{path} response"
                );
                assert!(!has_pan(&entry["headers"].to_string()), "{path} headers");
                let card_path = path.ends_with("/start/payout") || path.ends_with("/init/payout");
                if has_pan(body) {
                    assert!(card_path, "a PAN in the journaled body of {path}");
                    carrying += 1;
                }
                assert!(entry["status"].as_u64().is_some());
            }
            "webhook" => {
                webhooks += 1;
                assert!(!has_pan(&entry.to_string()), "{entry}");
            }
            other => panic!("unknown kind {other}"),
        }
    }
    assert_eq!(requests, 8);
    assert_eq!(webhooks, 4);
    assert_eq!(
        carrying, 2,
        "the v1 start and the v2 init carry the PAN verbatim"
    );
    // The create body was kept, masked.
    assert!(
        entries[0]["body"]
            .as_str()
            .unwrap()
            .contains("220000******0004")
    );
    assert!(entries[0]["headers"]["x-partner-sign"].is_string());

    // Session views and the rendered sessions never carry it either.
    let view = e.sandbox.session(&id).unwrap();
    assert!(!has_pan(&view.to_string()));
    assert_eq!(
        payout(&view["session"])["payout_details"]["card"]["last4"],
        "0004"
    );

    let cleared = p
        .status_of(reqwest::Method::DELETE, "/__sandbox/journal")
        .await;
    assert_eq!(cleared, 204);
    assert!(e.sandbox.journal().is_empty());
}
