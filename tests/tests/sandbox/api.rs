//! Authentication, spellings, validation and routing.

use serde_json::json;
use sha2::{Digest, Sha256};
use tests::sandbox::{self, ProjectConfig};

use crate::helpers::{PROJECT, Partner, VISA, env, env_with, partner_keys, payout, payout_body};

#[tokio::test]
async fn signature_is_checked_on_the_raw_body_before_json() {
    let e = env().await;
    let p = &e.partner;

    let (status, body) = p
        .post("/api/v2/session/create", json!({"metadata": "m"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["session"]["status"], "created");
    assert!(body["session"]["id"].as_str().unwrap().starts_with("ps_"));

    let url = format!("{}/api/v2/session/create", p.base);
    let send = |body: &'static [u8], sig: Option<String>, project: Option<&'static str>| {
        let mut req = p.http.post(&url).body(body);
        if let Some(s) = sig {
            req = req.header("X-PARTNER-SIGN", s);
        }
        if let Some(pr) = project {
            req = req.header("X-PARTNER-PROJECT", pr);
        }
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let code = |v: &serde_json::Value| v["error"]["code"].as_str().unwrap().to_owned();

    // Signed bytes differ from the sent bytes by one space: rejected.
    let (s, b) = send(b"{ }", Some(p.sign(b"{}")), Some(PROJECT)).await;
    assert_eq!((s, code(&b).as_str()), (401, "authentication_error"));
    assert_eq!(b["status"], "error");
    // No signature.
    let (s, b) = send(b"{}", None, Some(PROJECT)).await;
    assert_eq!((s, code(&b).as_str()), (401, "authentication_error"));
    // Not base64.
    let (s, b) = send(b"{}", Some("%%%".into()), Some(PROJECT)).await;
    assert_eq!((s, code(&b).as_str()), (401, "authentication_error"));
    // Not JSON, unsigned: the signature fails first.
    let (s, b) = send(b"not json", None, Some(PROJECT)).await;
    assert_eq!((s, code(&b).as_str()), (401, "authentication_error"));
    // Not JSON, signed: now it is the JSON that fails.
    let (s, b) = send(b"not json", Some(p.sign(b"not json")), Some(PROJECT)).await;
    assert_eq!((s, code(&b).as_str()), (400, "invalid_request"));
    // Unknown or missing project.
    let (s, b) = send(b"{}", Some(p.sign(b"{}")), Some("nobody")).await;
    assert_eq!((s, code(&b).as_str()), (401, "identification_error"));
    let (s, b) = send(b"{}", Some(p.sign(b"{}")), None).await;
    assert_eq!((s, code(&b).as_str()), (401, "identification_error"));
    // Signed with another key.
    let (other_private, _) = sandbox::generate_rsa_keypair_pem().unwrap();
    let stranger = Partner::new(&p.base, PROJECT, &other_private);
    let (s, b) = stranger.post("/api/v2/session/create", json!({})).await;
    assert_eq!((s, code(&b).as_str()), (401, "authentication_error"));
}

/// Known answer from OpenSSL, which nobody here wrote:
/// `openssl genrsa -traditional 2048 > kat_partner_pkcs1.pem`, then
/// `printf '{"session_id":"ps_1"}' | openssl dgst -sha256 -sign kat_partner_pkcs1.pem | base64 -w0`.
#[tokio::test]
async fn openssl_known_answer() {
    let private = include_str!("../data/kat_partner_pkcs1.pem");
    let public = include_str!("../data/kat_partner_public.pem");
    let expected = include_str!("../data/kat_sig_ps1.b64").trim();
    let body = br#"{"session_id":"ps_1"}"#;

    // Our own signers (the sandbox's and the test partner's) reproduce OpenSSL's bytes.
    assert_eq!(
        sandbox::Signer::from_pem(private)
            .unwrap()
            .sign(body)
            .unwrap(),
        expected
    );
    let e = env().await;
    let kat = Partner::new(&e.partner.base, "kat", private);
    assert_eq!(kat.sign(body), expected);

    // The sandbox accepts OpenSSL's signature: the call fails only because ps_1 is unknown.
    e.sandbox
        .add_project(ProjectConfig::new("kat", public))
        .unwrap();
    let (status, b) = kat.send("/api/v1/session/status", body, &[]).await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
    assert!(
        sandbox::Verifier::from_pem(public)
            .unwrap()
            .verify(body, expected)
    );
}

#[tokio::test]
async fn each_prefix_answers_in_its_spelling() {
    let e = env().await;
    let p = &e.partner;

    // (prefix, its destination and list keys, the other spelling's)
    let spellings = [
        (
            "v1",
            "payment_method",
            "payments",
            "payout_details",
            "payout_list",
        ),
        (
            "v2",
            "payout_details",
            "payout_list",
            "payment_method",
            "payments",
        ),
    ];
    let mut answers = Vec::new();
    for (v, destination, list, other_destination, other_list) in spellings {
        let (s, b) = p.init(v, payout_body(destination, VISA, 100, "Ivan")).await;
        assert_eq!(s, 200, "{b}");
        let po = &b["session"][list][0];
        assert!(b["session"].get(other_list).is_none(), "{v}: {b}");
        assert_eq!(po[destination]["card"]["last4"], "4242", "{v}");
        assert!(po.get(other_destination).is_none(), "{v}: {b}");
        answers.push(b);
    }

    let v2 = &answers[1];
    let po = &v2["session"]["payout_list"][0];
    let card = &po["payout_details"]["card"];
    assert_eq!(po["payout_details"]["type"], "card");
    assert_eq!(card["brand"], "visa");
    assert_eq!(card["bin"], "424242");
    let fingerprint = hex::encode(Sha256::digest(format!("{PROJECT}{VISA}")));
    assert_eq!(card["card_id"], fingerprint.as_str());
    assert!(!v2.to_string().contains(VISA));
    assert!(po["id"].as_str().unwrap().starts_with("po_"));

    // Lenient: each prefix accepts the other spelling in requests, answers in its own.
    let (s, mixed) = p
        .init("v2", payout_body("payment_method", VISA, 100, "Ivan"))
        .await;
    assert_eq!(s, 200, "{mixed}");
    assert!(mixed["session"]["payout_list"][0]["payout_details"].is_object());
    let id = mixed["session"]["id"].as_str().unwrap();
    let (_, as_v1) = p.on_session("v1", "status", id).await;
    assert!(payout(&as_v1["session"])["payment_method"].is_object());

    // Brands by first digit.
    for (number, brand) in [
        ("2200000000000004", "mir"),
        ("5555555555554444", "mastercard"),
    ] {
        let (_, b) = p
            .init("v2", payout_body("payout_details", number, 100, "I"))
            .await;
        assert_eq!(
            payout(&b["session"])["payout_details"]["card"]["brand"],
            brand
        );
    }
}

#[tokio::test]
async fn validation_and_routing() {
    let e = env_with(|c| c.projects[0].wallet_balance = 4242).await;
    let p = &e.partner;
    let code = |b: &serde_json::Value| b["error"]["code"].as_str().unwrap().to_owned();

    let mut no_name = payout_body("payout_details", VISA, 100, "x");
    no_name["participant_details"] = json!({"recipient": {}});
    let mut bad_amount = payout_body("payout_details", VISA, 0, "x");
    let short_card = payout_body("payout_details", "424242424242", 100, "x");
    let mut no_amount = payout_body("payout_details", VISA, 100, "x");
    no_amount.as_object_mut().unwrap().remove("amount_details");
    bad_amount["amount_details"]["currency"] = json!("rub");
    for body in [no_name, bad_amount, short_card, no_amount] {
        let (s, b) = p.init("v2", body).await;
        assert_eq!((s, code(&b).as_str()), (400, "invalid_request"), "{b}");
        assert!(!b.to_string().contains("424242424242"));
    }

    let (s, b) = p.on_session("v2", "status", "ps_999").await;
    assert_eq!((s, code(&b).as_str()), (400, "invalid_request"));
    let (s, b) = p.post("/api/v2/session/confirm", json!({})).await;
    assert_eq!((s, code(&b).as_str()), (400, "invalid_request"));
    let (s, b) = p
        .post("/api/v2/session/start/payout", json!({"session_id": 5}))
        .await;
    assert_eq!((s, code(&b).as_str()), (400, "invalid_request"));

    for path in [
        "/api/v2/wallet/balance",
        "/api/v3/session/create",
        "/api/v1/session/refund",
        "/",
    ] {
        let (s, _) = p.post(path, json!({})).await;
        assert_eq!(s, 404, "{path}");
    }
    let get = p
        .status_of(reqwest::Method::GET, "/api/v1/session/create")
        .await;
    assert_eq!(get, 405);

    let (s, b) = p.post("/api/v1/wallet/balance", json!({})).await;
    assert_eq!((s, code(&b).as_str()), (400, "invalid_request"));
    let (s, b) = p
        .post(
            "/api/v1/wallet/balance",
            json!({"request_datetime": "2024-04-10T19:53:00+03:00"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["wallets"][0]["amount_details"],
        json!({"amount": 4242, "currency": "rub"})
    );
    let _ = partner_keys();
}
