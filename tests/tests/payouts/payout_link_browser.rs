//! A payout link in a real browser (headless Chromium over WebDriver, `testkit::browser`): the
//! app asks the proxy for a link, the recipient opens its URL, the vault's standalone form takes
//! the secret from the fragment and drops it from the address bar, the card typed there is paid
//! out by the proxy through the sandbox exactly once (`payout_link.completed` before the
//! payout's own webhooks), and the link opened again says it is used and offers no form. A link
//! without a recipient asks the cardholder's name on the page, and the payout carries it. The
//! card numbers reach no answer, webhook, log or database outside the vault.
//!
//! Without chromedriver and Chromium this says `SKIPPED:` and passes; CI sets
//! `REQUIRE_BROWSER=1`, which makes a missing browser a failure.

use std::time::Duration;

use fantoccini::Locator;
use serde_json::{Value, json};
use testkit::browser::{self, Browser, DEADLINE};

use crate::payout_links::{assert_no_card_anywhere, payouts_made, submit};
use crate::stack::{SECS, Stack};

/// Paid by the sandbox (any Luhn-valid number without a magic ending is).
const PAN: &str = "4242424242424242";
/// The card of the link without a recipient: a Mir card the sandbox pays too.
const NAMED_PAN: &str = "2200000000000004";
/// What a second submission tries.
const OTHER_PAN: &str = "5555555555554444";
/// How long a page may take to react: a hang guard, answered as soon as the page is there.
const PATIENCE: Duration = DEADLINE;

/// December, three years from now, as typed into the form (`MMYY`; the page adds the slash).
fn future_expiry() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // A mean Gregorian year; three years ahead, a day's error at New Year does not matter.
    let year = 1970 + secs / 31_556_952;
    format!("12{:02}", (year + 3) % 100)
}

async fn text_of(b: &Browser, css: &str) -> String {
    b.wait_for(css, PATIENCE)
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn click(b: &Browser, css: &str) {
    b.client()
        .find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Types `text` into the input `css` selects.
async fn type_into(b: &Browser, css: &str, text: &str) {
    b.wait_for(css, PATIENCE)
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}

/// Waits until `script` (a JS expression) is truthy in the current page.
async fn page_until(b: &Browser, script: &str) {
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

/// Runs `script` (a JS expression) in the current page; its value.
async fn eval(b: &Browser, script: &str) -> Value {
    b.client()
        .execute(&format!("return ({script});"), vec![])
        .await
        .unwrap()
}

/// Opens `url` afresh (as from the message it came in) and waits for the form; checks the
/// secret is out of the address bar once the page has read it.
async fn open_form(b: &Browser, url: &str) {
    let (_, fragment) = url.split_once('#').expect("the secret in the fragment");
    let secret = fragment.strip_prefix("secret=").expect("#secret=…");
    b.client().goto("about:blank").await.unwrap();
    b.client().goto(url).await.unwrap();
    b.wait_for("#collect-form:not([hidden])", PATIENCE)
        .await
        .unwrap();
    page_until(b, "location.hash === ''").await;
    let address = b.client().current_url().await.unwrap();
    assert!(
        !address.as_str().contains("#secret") && !address.as_str().contains(secret),
        "the secret stays in the address bar: {address}"
    );
}

/// The page's markup and the browser's console so far, for the scan for card numbers.
async fn page_texts(b: &Browser) -> Vec<String> {
    let dom = eval(b, "document.documentElement.outerHTML").await;
    let mut texts = vec![dom.to_string()];
    texts.extend(b.console_log().await.unwrap());
    texts
}

/// The index of the app's one `payout_link.completed` about `link` and of the first webhook
/// about `payout`: the first must come before the second.
fn assert_link_hook_first(stack: &Stack, link: &str, payout: &str) {
    let hooks = stack.hooks.lock().unwrap().clone();
    let about_link: Vec<usize> = (0..hooks.len())
        .filter(|&i| hooks[i].event["data"]["payout_link"]["id"] == link)
        .collect();
    assert_eq!(about_link.len(), 1, "one webhook about the link");
    let completed = &hooks[about_link[0]];
    assert!(completed.signature_valid);
    assert_eq!(completed.event["type"], "payout_link.completed");
    assert_eq!(
        completed.event["data"]["payout_link"]["payout_id"], payout,
        "{}",
        completed.event
    );
    let first_payout_hook = (0..hooks.len())
        .find(|&i| hooks[i].event["data"]["payout"]["id"] == payout)
        .expect("a webhook about the payout");
    assert!(
        about_link[0] < first_payout_hook,
        "payout_link.completed came after the payout's webhooks"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payout_link_opened_in_a_browser_pays_out_once_and_then_says_it_is_used() {
    let stack = Stack::start().await;
    let Some(b) = browser::launch_trusting(std::slice::from_ref(&stack.server_spki))
        .await
        .unwrap()
    else {
        return;
    };
    let artifacts = browser::artifacts_dir();
    let expiry = future_expiry();
    let mut seen: Vec<String> = Vec::new();

    // A link for a named recipient: the form asks only for the card.
    let (id, url) = stack
        .new_link(
            "browser-link",
            &json!({"amount": 150_000, "currency": "RUB", "recipient": {"full_name": "Ivanov Ivan"},
                    "expires_in": 600, "metadata": {"order": "B-1"}}),
        )
        .await;
    assert!(
        url.starts_with(&format!("{}/collect/cs_", stack.vault_url)),
        "{url}"
    );
    open_form(&b, &url).await;
    assert_eq!(
        eval(&b, "document.getElementById('name-row').hidden").await,
        Value::Bool(true),
        "a link with a recipient asks no name"
    );
    type_into(&b, "#card-number", PAN).await;
    type_into(&b, "#card-expiry", &expiry).await;
    click(&b, "#submit").await;
    b.wait_for("#done:not([hidden])", PATIENCE).await.unwrap();
    assert!(
        text_of(&b, "#done-text").await.contains("4242"),
        "the page names the card's last four"
    );
    b.screenshot_to(&artifacts.join("payout-link-done.png"))
        .await
        .unwrap();
    seen.extend(page_texts(&b).await);

    // The proxy sees the completed form and pays the amount once.
    let done = stack.wait_link(&id, "completed").await;
    seen.push(done.to_string());
    assert_eq!(
        done["card"],
        json!({"last4": "4242", "brand": "visa"}),
        "{done}"
    );
    let payout_id = done["payout_id"].as_str().unwrap().to_owned();
    let paid = stack.wait_status(&payout_id, &["succeeded"], SECS).await;
    seen.push(paid.to_string());
    assert_eq!(
        (
            &paid["amount"],
            &paid["recipient"]["full_name"],
            &paid["card"]["last4"],
            &paid["metadata"]
        ),
        (
            &json!(150_000),
            &json!("Ivanov Ivan"),
            &json!("4242"),
            &json!({"order": "B-1"})
        ),
        "{paid}"
    );
    assert_eq!(stack.payouts_at_bank(&payout_id).await, 1);
    stack.wait_hook(&payout_id, "payout.succeeded").await;
    assert_link_hook_first(&stack, &id, &payout_id);

    // Opened again, the link says it is used and offers no card input.
    b.client().goto("about:blank").await.unwrap();
    b.client().goto(&url).await.unwrap();
    b.wait_for("#gone:not([hidden])", PATIENCE).await.unwrap();
    assert!(
        text_of(&b, "#gone-heading").await.contains("used"),
        "the reopened link does not say it is used"
    );
    assert_eq!(
        eval(&b, "document.getElementById('collect-form').hidden").await,
        Value::Bool(true)
    );
    let usable = eval(
        &b,
        "Array.from(document.querySelectorAll('input, button'))\
           .filter(function (e) { return !e.disabled && e.getClientRects().length > 0; }).length",
    )
    .await;
    assert_eq!(
        usable,
        json!(0),
        "the used link offers an input or a button"
    );
    assert!(
        !b.client()
            .find(Locator::Css("#card-number"))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap()
    );
    b.screenshot_to(&artifacts.join("payout-link-used.png"))
        .await
        .unwrap();
    seen.extend(page_texts(&b).await);

    // The form refuses a second card, and nothing more is paid.
    let (status, refused) = submit(&stack, &url, OTHER_PAN, None).await;
    assert_eq!(
        (status, &refused["error"]["code"]),
        (409, &json!("session_completed")),
        "{refused}"
    );
    seen.push(refused.to_string());
    let made = payouts_made(&stack).await;
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(stack.requests("session/start/payout").await.len(), 1);
    assert_eq!(stack.hooks_about_link(&id).len(), 1);

    // A link without a recipient: the page asks the name, and the payout carries it.
    let (named, named_url) = stack
        .new_link("browser-named", &json!({"amount": 2000, "currency": "RUB"}))
        .await;
    open_form(&b, &named_url).await;
    assert!(
        b.wait_for("#card-name", PATIENCE)
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap(),
        "a link without a recipient asks the cardholder's name"
    );
    type_into(&b, "#card-number", NAMED_PAN).await;
    type_into(&b, "#card-expiry", &expiry).await;
    // Without the name, the page says so and sends nothing.
    click(&b, "#submit").await;
    page_until(
        &b,
        "document.getElementById('card-name-error').textContent !== ''",
    )
    .await;
    assert!(
        text_of(&b, "#card-name-error").await.contains("name"),
        "the missing name is not named"
    );
    let (status, open) = stack.link_as(&stack.app_key, &named).await;
    assert_eq!((status, &open["status"]), (200, &json!("open")), "{open}");
    type_into(&b, "#card-name", "Petrova Anna").await;
    click(&b, "#submit").await;
    b.wait_for("#done:not([hidden])", PATIENCE).await.unwrap();
    assert!(text_of(&b, "#done-text").await.contains("0004"));
    seen.extend(page_texts(&b).await);
    let done = stack.wait_link(&named, "completed").await;
    seen.push(done.to_string());
    assert_eq!(done["card"]["brand"], "mir", "{done}");
    let named_payout = done["payout_id"].as_str().unwrap().to_owned();
    let paid = stack.wait_status(&named_payout, &["succeeded"], SECS).await;
    seen.push(paid.to_string());
    assert_eq!(
        (&paid["recipient"]["full_name"], &paid["amount"]),
        (&json!("Petrova Anna"), &json!(2000)),
        "{paid}"
    );
    assert_eq!(stack.payouts_at_bank(&named_payout).await, 1);
    stack.wait_hook(&named_payout, "payout.succeeded").await;
    assert_link_hook_first(&stack, &named, &named_payout);
    assert_eq!(payouts_made(&stack).await.len(), 2);

    // Every request the pages made went to the vault's origin alone.
    let origin = format!("{}/", stack.vault_url);
    let requests = b.requests().await.unwrap();
    assert!(
        requests.iter().any(|r| r.starts_with("POST ")),
        "{requests:?}"
    );
    for request in &requests {
        let (_, address) = request.split_once(' ').unwrap_or_default();
        assert!(
            !address.starts_with("http") || address.starts_with(&origin),
            "the page asked another origin: {request}"
        );
    }
    b.close().await.unwrap();
    assert_no_card_anywhere(&stack, &[PAN, NAMED_PAN, OTHER_PAN], &seen);
}
