//! Signatures against known answers made by `openssl` (fixtures/bank131/README.md), the support
//! command line, and webhook verification.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use proxy::bank131::{
    PayoutStatus, RequestSigner, SessionStatus, SignatureVerifier, Webhook, WebhookError,
    verify_and_parse,
};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bank131")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

const BODIES: &[&str] = &[
    "body-empty",
    "body-start-payout-v2",
    "body-cyrillic",
    "body-webhook-v1",
];

fn expected_signature(body: &str) -> String {
    String::from_utf8(read(&format!("{body}.sig")))
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn signer_reproduces_openssl_signatures_from_pkcs1_and_pkcs8_keys() {
    for key in ["partner-pkcs8.pem", "partner-pkcs1.pem"] {
        let signer = RequestSigner::from_pem(&read(key)).unwrap();
        for body in BODIES {
            let sig = signer.sign(&read(&format!("{body}.json"))).unwrap();
            assert_eq!(sig, expected_signature(body), "{key} {body}");
            assert_eq!(sig.len(), 344, "2048-bit signature in padded base64");
        }
    }
}

#[test]
fn verifier_accepts_openssl_signatures_and_rejects_any_changed_byte() {
    let verifier = SignatureVerifier::from_pem(&read("partner-public.pem")).unwrap();
    for body in BODIES {
        let bytes = read(&format!("{body}.json"));
        let sig = expected_signature(body);
        assert!(verifier.verify(&bytes, &sig), "{body}");
        for i in [0, bytes.len() / 2, bytes.len() - 1] {
            let mut changed = bytes.clone();
            changed[i] ^= 0x01;
            assert!(!verifier.verify(&changed, &sig), "{body}: byte {i} changed");
        }
        let mut appended = bytes.clone();
        appended.push(b' ');
        assert!(!verifier.verify(&appended, &sig), "{body}: trailing space");
        assert!(!verifier.verify(&bytes, "not base64!"), "garbage signature");
        assert!(!verifier.verify(&bytes, ""), "empty signature");
    }
}

#[test]
fn keys_that_are_not_rsa_pem_are_refused() {
    assert!(
        RequestSigner::from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
            .is_err()
    );
    assert!(RequestSigner::from_pem(&read("partner-public.pem")).is_err());
    assert!(SignatureVerifier::from_pem(&read("partner-pkcs1.pem")).is_err());
    let err = format!(
        "{:?}",
        RequestSigner::from_pem(&read("partner-pkcs8.pem")).unwrap()
    );
    assert_eq!(err, "RequestSigner { .. }");
}

/// The bank's key as the SDK's `openssl_pkey_get_public` takes it: SPKI, PKCS#1 or a
/// certificate, all made by openssl from one key (fixtures/bank131/README.md).
#[test]
fn the_bank_key_may_be_spki_pkcs1_or_a_certificate() {
    for key in [
        "partner-public.pem",
        "partner-public-pkcs1.pem",
        "partner-cert.pem",
    ] {
        let verifier =
            SignatureVerifier::from_pem(&read(key)).unwrap_or_else(|e| panic!("{key}: {e}"));
        for body in BODIES {
            let bytes = read(&format!("{body}.json"));
            assert!(
                verifier.verify(&bytes, &expected_signature(body)),
                "{key} {body}"
            );
            let mut changed = bytes.clone();
            changed[0] ^= 0x01;
            assert!(
                !verifier.verify(&changed, &expected_signature(body)),
                "{key} {body}"
            );
        }
    }
}

/// `X-PARTNER-SIGN` as PHP's `base64_decode` reads it: padding optional, whitespace (folded
/// headers, a trailing newline) ignored. The signature itself is still checked exactly.
#[test]
fn the_signature_header_decodes_with_or_without_padding_and_whitespace() {
    let verifier = SignatureVerifier::from_pem(&read("partner-public.pem")).unwrap();
    let bytes = read("body-empty.json");
    let sig = expected_signature("body-empty");
    assert!(sig.ends_with('='), "the fixture has padding to drop");
    let unpadded = sig.trim_end_matches('=').to_owned();
    let folded: String = sig
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\r\n ");
    for variant in [
        sig.clone(),
        unpadded.clone(),
        folded,
        format!(" {unpadded}\n"),
    ] {
        assert!(verifier.verify(&bytes, &variant), "{variant:?}");
        assert!(
            !verifier.verify(b"{ }", &variant),
            "{variant:?} over other bytes"
        );
    }
    // Not base64 at all, or a truncated signature: refused.
    assert!(!verifier.verify(&bytes, &sig.replace('A', "*")));
    assert!(!verifier.verify(&bytes, &sig[..sig.len() - 8]));
}

/// A passphrase-protected partner key (encrypted PKCS#8, by `openssl pkcs8 -topk8 -v2
/// aes-256-cbc`) signs exactly as the plain one; a missing or wrong passphrase is a clear error.
#[test]
fn a_passphrase_protected_partner_key_signs_like_the_plain_one() {
    // Git keeps no file modes: copy the fixtures as a deployment would keep them (0600).
    let dir = tempfile::tempdir().unwrap();
    let private = |name: &str| written(&dir.path().join(name), &read(name), 0o600);
    let (key, passphrase) = (
        private("partner-encrypted.pem"),
        private("partner-passphrase.txt"),
    );
    let signer = RequestSigner::from_files(&key, Some(&passphrase)).unwrap();
    for body in BODIES {
        assert_eq!(
            signer.sign(&read(&format!("{body}.json"))).unwrap(),
            expected_signature(body),
            "{body}"
        );
    }
    let wrong = written(
        &dir.path().join("wrong.txt"),
        b"Correct horse battery staple\n",
        0o600,
    );
    for passphrase in [None, Some(wrong.as_path())] {
        let err = refusal(&key, passphrase);
        assert!(
            err.contains("passphrase") && err.contains("bank131.private_key_passphrase_file"),
            "{err}"
        );
    }
}

/// Why the partner key at `key` (with `passphrase`) does not load.
fn refusal(key: &Path, passphrase: Option<&Path>) -> String {
    RequestSigner::from_files(key, passphrase)
        .unwrap_err()
        .to_string()
}

/// Writes `contents` to `path` with permissions `mode`; returns the path.
fn written(path: &Path, contents: &[u8], mode: u32) -> PathBuf {
    std::fs::write(path, contents).unwrap();
    set_mode(path, mode);
    path.to_path_buf()
}

fn set_mode(path: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
}

/// The partner key and its passphrase file are the owner's only, or the client does not load.
#[cfg(unix)]
#[test]
fn a_partner_key_others_can_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = written(
        &dir.path().join("partner.pem"),
        &read("partner-pkcs8.pem"),
        0o644,
    );
    let err = refusal(&key, None);
    assert!(
        err.contains("bank131.private_key_file") && err.contains("chmod 600"),
        "{err}"
    );
    assert!(!err.contains("PRIVATE KEY"));
    set_mode(&key, 0o600);
    let pass = written(&dir.path().join("pass.txt"), b"x\n", 0o640);
    let err = refusal(&key, Some(&pass));
    assert!(err.contains("bank131.private_key_passphrase_file"), "{err}");
    assert!(RequestSigner::from_files(&key, None).is_ok());
    // A key file is read into a fixed buffer, never grown: a file larger than any key is
    // refused, naming the file and not quoting it.
    let mut huge = read("partner-pkcs8.pem");
    huge.resize(70 * 1024, b'\n');
    std::fs::write(&key, &huge).unwrap();
    let err = refusal(&key, None);
    assert!(
        err.contains("64 KiB") && err.contains("partner.pem"),
        "{err}"
    );
    assert!(!err.contains("PRIVATE KEY"), "{err}");
}

/// Our signatures of bodies nobody prepared are accepted by openssl itself (skipped where the
/// machine has no `openssl` binary: the fixtures above already pin the algorithm).
#[test]
fn openssl_accepts_our_signatures() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("openssl not installed; skipping the live cross-check");
        return;
    }
    let signer = RequestSigner::from_pem(&read("partner-pkcs1.pem")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (i, body) in [
        "{\"session_id\":\"ps_1\"}",
        "[]",
        "{\"x\":\"\\u0000 \\/ ü\"}\n",
    ]
    .iter()
    .enumerate()
    {
        let body_path = dir.path().join(format!("b{i}"));
        let sig_path = dir.path().join(format!("s{i}"));
        std::fs::write(&body_path, body).unwrap();
        let sig = signer.sign(body.as_bytes()).unwrap();
        use base64::Engine;
        std::fs::write(
            &sig_path,
            base64::engine::general_purpose::STANDARD
                .decode(sig)
                .unwrap(),
        )
        .unwrap();
        let out = Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(fixture("partner-public.pem"))
            .arg("-signature")
            .arg(&sig_path)
            .arg(&body_path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl rejected our signature of {body:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn cli_sign_and_verify() {
    let proxy = env!("CARGO_BIN_EXE_proxy");
    // From a file.
    let out = Command::new(proxy)
        .args(["bank131", "sign", "--key"])
        .arg(fixture("partner-pkcs8.pem"))
        .arg(fixture("body-cyrillic.json"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        expected_signature("body-cyrillic")
    );

    // From standard input, exact bytes.
    let mut child = Command::new(proxy)
        .args(["bank131", "sign", "--key"])
        .arg(fixture("partner-pkcs1.pem"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"{}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        expected_signature("body-empty")
    );

    let verify = |sig: &str, body: &str| {
        Command::new(proxy)
            .args(["bank131", "verify", "--key"])
            .arg(fixture("partner-public.pem"))
            .args(["--signature", sig])
            .arg(fixture(body))
            .output()
            .unwrap()
    };
    let ok = verify(
        &expected_signature("body-webhook-v1"),
        "body-webhook-v1.json",
    );
    assert_eq!(ok.status.code(), Some(0));
    assert_eq!(String::from_utf8(ok.stdout).unwrap().trim(), "valid");
    let bad = verify(&expected_signature("body-empty"), "body-webhook-v1.json");
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(String::from_utf8(bad.stdout).unwrap().trim(), "invalid");
}

// --- Webhooks. The fixture key pair plays the bank here. ---

fn bank() -> (RequestSigner, SignatureVerifier) {
    (
        RequestSigner::from_pem(&read("partner-pkcs8.pem")).unwrap(),
        SignatureVerifier::from_pem(&read("partner-public.pem")).unwrap(),
    )
}

#[test]
fn documented_payloads_verify_in_both_spellings() {
    let (signer, verifier) = bank();

    // payment_finished, v1 spelling (API.md §8.2), signed by openssl.
    let body = read("body-webhook-v1.json");
    let hook = verify_and_parse(
        &verifier,
        &body,
        Some(&expected_signature("body-webhook-v1")),
    )
    .unwrap();
    let Webhook::PaymentFinished { session } = hook else {
        panic!("{hook:?}")
    };
    assert_eq!(session.status, SessionStatus::Accepted);
    let payout = &session.payouts()[0];
    assert_eq!(payout.status, PayoutStatus::Succeeded);
    let card = payout.card().unwrap();
    assert_eq!(card.last4.as_deref(), Some("4940"));
    assert_eq!(
        payout.transaction_info.as_ref().unwrap()["rrn"].as_str(),
        Some("425307614918")
    );

    // ready_to_confirm, v1 and v2 spellings, with unknown fields the client must ignore.
    let v1 = br#"{"type":"ready_to_confirm","session":{"id":"ps_3230","status":"in_progress","created_at":"2018-05-27T02:03:00.000000Z","updated_at":"2018-05-27T02:03:00.000000Z","next_action":"confirm","payments":[{"id":"po_2018","status":"pending","created_at":"2018-05-27T02:03:00.000000Z","customer":{"reference":"user123","contacts":[{"email":"user@gmail.com"}]},"payment_method":{"type":"card","card":{"last4":"4242","brand":"visa"}},"amount_details":{"amount":10000,"currency":"rub"},"metadata":"good"}]}}"#;
    let v2 = br#"{"type":"ready_to_confirm","session":{"id":"ps_3230","status":"in_progress","created_at":"2018-05-27T02:03:00.000000Z","updated_at":"2018-05-27T02:03:00.000000Z","next_action":"confirm","new_field":{"a":1},"payout_list":[{"id":"po_2018","status":"pending","created_at":"2018-05-27T02:03:00.000000Z","payout_details":{"type":"card","card":{"last4":"4242","brand":"visa","card_id":"ab"}},"amount_details":{"amount":10000,"currency":"RUB"},"amounts":{"fee":{"merchant_fee":{"amount":10,"currency":"RUB"}}}}]}}"#;
    let mut parsed = Vec::new();
    for body in [&v1[..], &v2[..]] {
        let sig = signer.sign(body).unwrap();
        let hook = verify_and_parse(&verifier, body, Some(&sig)).unwrap();
        let Webhook::ReadyToConfirm { session, .. } = hook else {
            panic!("{hook:?}")
        };
        assert_eq!(
            session.next_action,
            Some(proxy::bank131::NextAction::Confirm)
        );
        parsed.push(session);
    }
    let (a, b) = (&parsed[0].payouts()[0], &parsed[1].payouts()[0]);
    assert_eq!(a.id, b.id);
    assert_eq!(a.status, PayoutStatus::Pending);
    assert!(
        a.amount_details
            .as_ref()
            .unwrap()
            .same_money(b.amount_details.as_ref().unwrap())
    );
    assert_eq!(a.card().unwrap().last4, b.card().unwrap().last4);

    // Unknown types are tolerated.
    let other =
        br#"{"type":"transaction_registration","session":{"id":"ps_1","status":"in_progress"}}"#;
    let hook = verify_and_parse(&verifier, other, Some(&signer.sign(other).unwrap())).unwrap();
    assert!(
        matches!(hook, Webhook::Unknown { ref kind, .. } if kind == "transaction_registration"),
        "{hook:?}"
    );
}

#[test]
fn forged_reserialized_and_unsigned_webhooks_are_refused() {
    let (_, verifier) = bank();
    let body = read("body-webhook-v1.json");
    let sig = expected_signature("body-webhook-v1");

    assert_eq!(
        verify_and_parse(&verifier, &body, None),
        Err(WebhookError::MissingSignature)
    );
    assert_eq!(
        verify_and_parse(&verifier, &body, Some(&expected_signature("body-empty"))),
        Err(WebhookError::BadSignature)
    );

    // Same JSON, different bytes: a re-serialized body does not verify.
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let pretty = serde_json::to_vec_pretty(&value).unwrap();
    assert_eq!(
        verify_and_parse(&verifier, &pretty, Some(&sig)),
        Err(WebhookError::BadSignature)
    );

    // A forger with another key.
    let forger = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let mut forged = vec![0u8; forger.public_modulus_len()];
    forger
        .sign(
            &aws_lc_rs::signature::RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            &body,
            &mut forged,
        )
        .unwrap();
    use base64::Engine;
    let forged = base64::engine::general_purpose::STANDARD.encode(forged);
    assert_eq!(
        verify_and_parse(&verifier, &body, Some(&forged)),
        Err(WebhookError::BadSignature)
    );

    // Signed garbage is malformed, not a panic.
    let (signer, _) = bank();
    for garbage in [
        &b"not json"[..],
        br#"{"type":"payment_finished"}"#,
        br#"{"session":{}}"#,
    ] {
        let sig = signer.sign(garbage).unwrap();
        assert_eq!(
            verify_and_parse(&verifier, garbage, Some(&sig)),
            Err(WebhookError::Malformed)
        );
    }
}
