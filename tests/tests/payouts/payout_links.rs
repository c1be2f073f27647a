//! Payout links end to end: the app asks the proxy for a link, the recipient's card goes to the
//! vault's own form exactly as the hosted page sends it (`POST /collect/{id}/submit`, the
//! secret from the link's fragment, the vault's origin), and the proxy pays the amount to the
//! new token once, telling the app `payout_link.completed` before the payout's own webhooks.
//! Also: replays and conflicts of the create, another app's view, a second submission, expiry,
//! a link without a recipient, the create's refusals, a forged row that pays nothing, and no
//! card number in any response, webhook, log or database.

use serde_json::{Value, json};
use shared::Pan;

use crate::stack::{AppHook, SECS, Stack, until};

const PAN: &str = "4242424242424242";
const OTHER_PAN: &str = "5555555555554444";

impl Stack {
    /// `POST /v1/payout_links` as the app: the status, the `Idempotent-Replayed` header and the
    /// body.
    pub(crate) async fn create_link(&self, key: Option<&str>, body: &Value) -> (u16, bool, Value) {
        let mut request = self
            .http
            .post(format!("{}/v1/payout_links", self.proxy_url))
            .bearer_auth(&self.app_key)
            .json(body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let r = request.send().await.unwrap();
        let status = r.status().as_u16();
        let replayed = r.headers().get("idempotent-replayed").is_some();
        (status, replayed, r.json().await.unwrap())
    }

    /// A new link for `body`: its id and URL.
    pub(crate) async fn new_link(&self, key: &str, body: &Value) -> (String, String) {
        let (status, _, link) = self.create_link(Some(key), body).await;
        assert_eq!(status, 201, "{link}");
        (
            link["id"].as_str().unwrap().to_owned(),
            link["url"].as_str().unwrap().to_owned(),
        )
    }

    /// `GET /v1/payout_links/{id}` with `key`.
    pub(crate) async fn link_as(&self, key: &str, id: &str) -> (u16, Value) {
        self.get_json(key, &format!("/v1/payout_links/{id}")).await
    }

    /// Polls the link until its status is `want`.
    pub(crate) async fn wait_link(&self, id: &str, want: &str) -> Value {
        until(SECS, async || {
            let (_, link) = self.link_as(&self.app_key, id).await;
            if link["status"] == want {
                Ok(link)
            } else {
                Err(format!("payout link {id} never {want}: {link}"))
            }
        })
        .await
    }

    /// The app webhooks received so far about payout link `id`.
    pub(crate) fn hooks_about_link(&self, id: &str) -> Vec<AppHook> {
        self.hooks
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.event["data"]["payout_link"]["id"] == id)
            .cloned()
            .collect()
    }
}

/// Submits `pan` to the form behind `url` as the vault's page does: to the page's own
/// `…/submit`, with the secret from the fragment and the vault's origin. The status and body.
pub(crate) async fn submit(
    stack: &Stack,
    url: &str,
    pan: &str,
    name: Option<&str>,
) -> (u16, Value) {
    let (page, secret) = url
        .split_once("#secret=")
        .expect("the secret in the fragment");
    let mut body = json!({"client_secret": secret, "pan": pan, "exp_month": 12, "exp_year": 2030});
    if let Some(name) = name {
        body["cardholder_name"] = name.into();
    }
    let r = stack
        .http
        .post(format!("{page}/submit"))
        .header("origin", &stack.vault_url)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// How many payouts of this app there are (one page of up to 100).
pub(crate) async fn payouts_made(stack: &Stack) -> Vec<Value> {
    let (status, page) = stack
        .get_json(&stack.app_key, "/v1/payouts?limit=100")
        .await;
    assert_eq!(status, 200, "{page}");
    page["data"].as_array().cloned().unwrap_or_default()
}

/// No card number of `pans` in `texts`, the app's webhooks, or any file the stack wrote (the
/// proxy's database, WAL and log; the vault's database, WAL and log), but the keys.
pub(crate) fn assert_no_card_anywhere(stack: &Stack, pans: &[&str], texts: &[String]) {
    let hooks: Vec<u8> = stack
        .hooks
        .lock()
        .unwrap()
        .iter()
        .flat_map(|h| h.body.clone())
        .collect();
    let files = stack.files();
    assert!(files.iter().any(|(name, _)| name == "proxy-1.log"));
    for pan in pans {
        let pan = Pan::parse(pan).unwrap();
        let found = |bytes: &[u8]| shared::scan::contains_pan_any_encoding(bytes, &pan);
        assert!(
            !found(texts.join("\n").as_bytes()),
            "a response carries a card number"
        );
        assert!(!found(&hooks), "an app webhook carries a card number");
        for (name, bytes) in &files {
            if name.starts_with("partner") || name == "master.key" {
                continue;
            }
            assert!(!found(bytes), "{name} carries a card number");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payout_link_collects_the_card_and_pays_it_out_once() {
    let stack = Stack::start().await;
    let mut seen: Vec<String> = Vec::new();
    let body = json!({"amount": 150_000, "currency": "rub", "recipient": {"full_name": "Ivanov Ivan"},
                      "expires_in": 600, "metadata": {"order": "L-1"}});
    let (status, replayed, link) = stack.create_link(Some("link-1"), &body).await;
    assert_eq!((status, replayed), (201, false), "{link}");
    seen.push(link.to_string());
    let id = link["id"].as_str().unwrap().to_owned();
    let url = link["url"].as_str().unwrap().to_owned();
    assert!(id.starts_with("pl_"), "{link}");
    assert_eq!(
        (
            &link["status"],
            &link["amount"],
            &link["currency"],
            &link["payout_id"]
        ),
        (&json!("open"), &json!(150_000), &json!("RUB"), &Value::Null),
        "{link}"
    );
    assert_eq!(link["recipient"]["full_name"], "Ivanov Ivan");
    assert_eq!(link["metadata"], json!({"order": "L-1"}));
    assert!(link["expires_at"].as_str().is_some(), "{link}");
    // The vault's own page, standalone; the secret only in the fragment, never a query.
    let (page, secret) = url.split_once('#').unwrap();
    assert!(
        page.starts_with(&format!("{}/collect/cs_", stack.vault_url)) && !url.contains('?'),
        "{url}"
    );
    assert!(secret.starts_with("secret=css_"), "{url}");

    // The same key and body: the same link (and URL), marked a replay; another body: 409.
    let (status, replayed, again) = stack.create_link(Some("link-1"), &body).await;
    assert_eq!((status, replayed), (200, true), "{again}");
    assert_eq!((&again["id"], &again["url"]), (&link["id"], &link["url"]));
    let mut other = body.clone();
    other["amount"] = json!(150_001);
    let (status, _, conflict) = stack.create_link(Some("link-1"), &other).await;
    assert_eq!(status, 409, "{conflict}");
    assert_eq!(conflict["error"]["code"], "idempotency_conflict");

    // Read by its app; another app of the tenant sees nothing, exactly as for no link at all.
    let (status, read) = stack.link_as(&stack.app_key, &id).await;
    assert_eq!((status, &read["url"]), (200, &link["url"]), "{read}");
    let other_app = stack.proxy_client("other", crate::stack::TENANT, "payouts:read");
    let foreign = stack
        .get_as(&other_app, &format!("/v1/payout_links/{id}"))
        .await;
    let missing = stack
        .get_as(&other_app, "/v1/payout_links/pl_0000000000000000000000")
        .await;
    assert_eq!(foreign.0, 404);
    assert_eq!(foreign, missing);

    // The recipient enters the card on the vault's page.
    let (status, submitted) = submit(&stack, &url, PAN, None).await;
    assert_eq!(status, 200, "{submitted}");
    let done = stack.wait_link(&id, "completed").await;
    seen.push(done.to_string());
    assert_eq!(
        done["card"],
        json!({"last4": "4242", "brand": "visa"}),
        "{done}"
    );
    assert_eq!(
        done["url"],
        Value::Null,
        "a closed link shows no URL: {done}"
    );
    let payout_id = done["payout_id"].as_str().unwrap().to_owned();
    let paid = stack.wait_status(&payout_id, &["succeeded"], SECS).await;
    seen.push(paid.to_string());
    assert_eq!(
        (
            &paid["amount"],
            &paid["currency"],
            &paid["recipient"]["full_name"],
            &paid["card"]["last4"]
        ),
        (
            &json!(150_000),
            &json!("RUB"),
            &json!("Ivanov Ivan"),
            &json!("4242")
        ),
        "{paid}"
    );
    assert_eq!(paid["card_token"], submitted["token"]);
    assert_eq!(paid["metadata"], json!({"order": "L-1"}));
    assert_eq!(stack.payouts_at_bank(&payout_id).await, 1);

    // The app hears of the link first, then of its payout.
    stack.wait_hook(&payout_id, "payout.succeeded").await;
    let hooks = stack.hooks.lock().unwrap().clone();
    let link_hooks: Vec<usize> = (0..hooks.len())
        .filter(|&i| hooks[i].event["data"]["payout_link"]["id"] == id.as_str())
        .collect();
    assert_eq!(link_hooks.len(), 1, "one payout_link.completed");
    let completed = &hooks[link_hooks[0]];
    assert!(completed.signature_valid);
    assert_eq!(completed.event["type"], "payout_link.completed");
    let data = &completed.event["data"]["payout_link"];
    assert_eq!(
        (
            &data["status"],
            &data["payout_id"],
            &data["card"],
            &data["url"]
        ),
        (
            &json!("completed"),
            &json!(payout_id),
            &json!({"last4": "4242", "brand": "visa"}),
            &Value::Null
        ),
        "{data}"
    );
    let first_payout_hook = (0..hooks.len())
        .find(|&i| hooks[i].event["data"]["payout"]["id"] == payout_id.as_str())
        .unwrap();
    assert!(
        link_hooks[0] < first_payout_hook,
        "payout_link.completed came after the payout's webhooks"
    );

    // The form refuses a second card, and nothing more is paid, however long it is polled.
    let (status, refused) = submit(&stack, &url, OTHER_PAN, None).await;
    assert_eq!(
        (status, &refused["error"]["code"]),
        (409, &json!("session_completed")),
        "{refused}"
    );
    // Several poll intervals, each seen by the link's row not being claimed any more.
    let store = stack.proxy_store();
    let link_id = proxy::ids::PayoutLinkId::parse(&id).unwrap();
    let row = proxy::store::ProxyStore::link(&store, &link_id)
        .await
        .unwrap()
        .unwrap();
    until(SECS, async || {
        let now = proxy::engine::now_micros();
        if now > row.next_poll_at + 500_000 {
            Ok(())
        } else {
            Err("waiting out five poll intervals".to_owned())
        }
    })
    .await;
    let after = proxy::store::ProxyStore::link(&store, &link_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        after.version, row.version,
        "a completed link is polled no more"
    );
    let made = payouts_made(&stack).await;
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(stack.requests("session/start/payout").await.len(), 1);
    assert_eq!(stack.hooks_about_link(&id).len(), 1);

    // The events API lists the link's event, and only it, by link.
    let (status, events) = stack
        .get_json(&stack.app_key, &format!("/v1/events?payout_link={id}"))
        .await;
    assert_eq!(status, 200, "{events}");
    let events = events["data"].as_array().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (
            &events[0]["type"],
            &events[0]["payout_id"],
            &events[0]["payout_link_id"]
        ),
        (
            &json!("payout_link.completed"),
            &json!(payout_id),
            &json!(id)
        )
    );
    seen.extend(events.iter().map(Value::to_string));
    assert_no_card_anywhere(&stack, &[PAN, OTHER_PAN], &seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payout_links_expire_take_the_cardholders_name_refuse_bad_input_and_forged_rows() {
    let stack = Stack::start().await;
    let mut seen: Vec<String> = Vec::new();

    // A link that expires unused: closed on the vault's word, the app told, its form refuses.
    let (expiring, expiring_url) = stack
        .new_link(
            "short",
            &json!({"amount": 1000, "currency": "RUB", "expires_in": 1}),
        )
        .await;
    let expired = stack.wait_link(&expiring, "expired").await;
    seen.push(expired.to_string());
    assert_eq!(
        (&expired["payout_id"], &expired["url"]),
        (&Value::Null, &Value::Null)
    );
    let hook = until(SECS, async || {
        stack
            .hooks_about_link(&expiring)
            .into_iter()
            .next()
            .ok_or_else(|| "no payout_link.expired".to_owned())
    })
    .await;
    assert_eq!(hook.event["type"], "payout_link.expired");
    assert_eq!(hook.event["data"]["payout_link"]["status"], "expired");
    let (status, refused) = submit(&stack, &expiring_url, PAN, None).await;
    assert_eq!(
        (status, &refused["error"]["code"]),
        (410, &json!("session_expired")),
        "{refused}"
    );

    // No recipient given: the form asks the cardholder's name, and the payout carries it.
    let (named, named_url) = stack
        .new_link("no-recipient", &json!({"amount": 2000, "currency": "RUB"}))
        .await;
    let (status, body) = submit(&stack, &named_url, PAN, Some("Petrova Anna")).await;
    assert_eq!(status, 200, "{body}");
    let done = stack.wait_link(&named, "completed").await;
    let payout_id = done["payout_id"].as_str().unwrap().to_owned();
    let paid = stack.wait_status(&payout_id, &["succeeded"], SECS).await;
    assert_eq!(paid["recipient"]["full_name"], "Petrova Anna", "{paid}");
    assert_eq!(done["recipient"], Value::Null, "{done}");
    seen.extend([done.to_string(), paid.to_string()]);

    // Refusals name the field and never echo the value.
    let cases: &[(Value, &str, &str)] = &[
        (
            json!({"amount": 0, "currency": "RUB"}),
            "invalid_request",
            "amount",
        ),
        (json!({"currency": "RUB"}), "invalid_request", "amount"),
        (
            json!({"amount": 1, "currency": "XYZ"}),
            "invalid_request",
            "currency",
        ),
        (
            json!({"amount": 1, "currency": "RUB", "expires_in": 0}),
            "invalid_request",
            "expires_in",
        ),
        (
            json!({"amount": 1, "currency": "RUB", "expires_in": 604_801}),
            "invalid_request",
            "expires_in",
        ),
        (
            json!({"amount": 1, "currency": "RUB", "expires_in": "soon"}),
            "invalid_request",
            "expires_in",
        ),
        (
            json!({"amount": 1, "currency": "RUB", "recipient": {"full_name": " "}}),
            "invalid_request",
            "recipient.full_name",
        ),
        (
            json!({"amount": 1, "currency": "RUB", "recipient": {"full_name": PAN}}),
            "sensitive_data_rejected",
            "recipient.full_name",
        ),
        (
            json!({"amount": 1, "currency": "RUB", "metadata": {"n": PAN}}),
            "sensitive_data_rejected",
            "metadata.n",
        ),
        (
            json!({"amount": 1, "currency": "RUB", "colour": "XYZ"}),
            "invalid_request",
            "colour",
        ),
        (
            json!({"amount": 1, "currency": "RUB", "pan": PAN}),
            "invalid_request",
            "pan",
        ),
        (
            json!({"amount": 1, "currency": "RUB", "metadata": {"cvv": "123"}}),
            "sensitive_data_rejected",
            "metadata.cvv",
        ),
    ];
    for (i, (body, code, param)) in cases.iter().enumerate() {
        let (status, _, answer) = stack.create_link(Some(&format!("bad-{i}")), body).await;
        assert_eq!(
            (status, &answer["error"]["code"], &answer["error"]["param"]),
            (400, &json!(code), &json!(param)),
            "{body}: {answer}"
        );
        let text = answer.to_string();
        assert!(!text.contains("XYZ") && !text.contains("soon"), "{text}");
        seen.push(text);
    }
    let (status, _, answer) = stack
        .create_link(None, &json!({"amount": 1, "currency": "RUB"}))
        .await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (400, &json!("idempotency_key_required"))
    );
    // The payouts of links have keys of their own, which no app may take.
    let token = stack.tokenize(OTHER_PAN).await;
    let (status, answer) = stack
        .create_payout(
            &format!("payout_link:{named}"),
            &json!({"card_token": token, "amount": 1, "currency": "RUB", "recipient": {"full_name": "A B"}}),
        )
        .await;
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(
        (status, &answer["error"]["param"]),
        (400, &json!("Idempotency-Key")),
        "{answer}"
    );

    // A link row changed in the database (its amount raised) pays nothing: the poller refuses
    // it, and so does the API.
    let (forged, forged_url) = stack
        .new_link(
            "forged",
            &json!({"amount": 3000, "currency": "RUB", "recipient": {"full_name": "A B"}}),
        )
        .await;
    let db = rusqlite::Connection::open(stack.path("proxy.db")).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    let changed = db
        .execute(
            "UPDATE payout_links SET amount = 99999999 WHERE id = ?1",
            [&forged],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);
    let (status, body) = submit(&stack, &forged_url, OTHER_PAN, None).await;
    assert_eq!(status, 200, "{body}");
    until(SECS, async || {
        let log = std::fs::read_to_string(stack.path("proxy-1.log")).unwrap_or_default();
        log.lines()
            .any(|l| l.contains("fails its tag") && l.contains(&forged))
            .then_some(())
            .ok_or_else(|| "the poller never looked at the forged link".to_owned())
    })
    .await;
    let (status, answer) = stack.link_as(&stack.app_key, &forged).await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (500, &json!("internal")),
        "{answer}"
    );
    let store = stack.proxy_store();
    let client = proxy::store::ProxyStore::clients(&store).await.unwrap();
    let key = format!("payout_link:{forged}");
    for c in client {
        assert!(
            proxy::store::ProxyStore::payout_by_idempotency_key(&store, &c.id, &key)
                .await
                .unwrap()
                .is_none(),
            "a forged link was paid"
        );
    }
    assert_eq!(
        payouts_made(&stack).await.len(),
        1,
        "only the named link's payout"
    );
    assert!(
        stack
            .requests_holding("session/start/payout", "99999999")
            .await
            .is_empty()
    );
    assert_no_card_anywhere(&stack, &[PAN, OTHER_PAN], &seen);
}
