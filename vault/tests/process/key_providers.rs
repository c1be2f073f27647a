//! Where the master key comes from, as real processes: an HSM (SoftHSM2 through PKCS#11) that
//! never lets it out, Shamir shares that start the vault sealed, and production mode refusing a
//! key file.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::Digest;
use testkit::output::{assert_success, stderr, stdout};

use super::helpers::{ALL_SCOPES, VaultDir};

const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PAN: &str = "4111111111111111";

/// SoftHSM2's module, or `None` after a visible skip line; with `REQUIRE_SOFTHSM=1` (CI) a
/// missing SoftHSM2 fails the test instead.
fn softhsm() -> Option<&'static str> {
    let present = Path::new(SOFTHSM_MODULE).exists()
        && Command::new("softhsm2-util")
            .arg("--version")
            .output()
            .is_ok();
    if present {
        return Some(SOFTHSM_MODULE);
    }
    assert!(
        std::env::var_os("REQUIRE_SOFTHSM").is_none(),
        "REQUIRE_SOFTHSM is set but SoftHSM2 is missing ({SOFTHSM_MODULE}, softhsm2-util): apt-get install softhsm2"
    );
    eprintln!(
        "SKIPPED: no SoftHSM2 ({SOFTHSM_MODULE}); apt-get install softhsm2 to run the HSM tests"
    );
    None
}

/// A SoftHSM2 token labelled `vault` with user PIN `pin`, in its own directory: the
/// environment its commands need.
fn token(dir: &Path, pin: &str) -> Vec<(String, String)> {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let env = vec![("SOFTHSM2_CONF".to_owned(), conf.display().to_string())];
    let out = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "vault",
            "--so-pin",
            "12345678",
            "--pin",
            pin,
        ])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert_success(&out);
    env
}

fn write_secret(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_hsm_holds_the_master_key_through_init_serve_rotate_and_restart() {
    let Some(module) = softhsm() else { return };
    let hsm_dir = tempfile::tempdir().unwrap();
    let env = token(hsm_dir.path(), "246810");
    let pin_file = hsm_dir.path().join("hsm.pin");
    let vault = VaultDir::uninitialised(
        &format!(
            "provider = \"pkcs11\"\n[keys.pkcs11]\nmodule = \"{module}\"\ntoken_label = \"vault\"\nkey_label = \"vault-master\"\npin_file = \"{}\"\n",
            pin_file.display()
        ),
        env.clone(),
    );

    // A PIN file others can read is refused, naming the file and the fix, never the PIN.
    write_secret(&pin_file, "246810\n", 0o644);
    let refused = VaultDir::refused(vault.command(&["init"]));
    assert!(refused.contains("chmod 600"), "{refused}");
    assert!(!refused.contains("246810"), "{refused}");
    // A wrong PIN is refused by the token.
    write_secret(&pin_file, "999999\n", 0o600);
    let refused = VaultDir::refused(vault.command(&["init"]));
    assert!(refused.contains("refused the PIN"), "{refused}");
    assert!(!refused.contains("999999"), "{refused}");

    write_secret(&pin_file, "246810\n", 0o600);
    let made = vault.run(&["init"]);
    assert_success(&made);
    assert!(
        stdout(&made).contains("inside the HSM"),
        "{}",
        stdout(&made)
    );
    assert!(!vault.path("master.key").exists(), "no key file is written");
    // A second init refuses: the database has keys under the HSM key.
    VaultDir::refused(vault.command(&["init"]));
    let check = vault.run(&["check"]);
    assert_success(&check);

    let (_, key) = vault.client("t1", ALL_SCOPES);
    let server = vault.serve();
    let before = server.token_for(&key, PAN).await;
    server.detokenize(&key, &before, "payout").await;
    assert_success(&vault.run(&["keys", "rotate"]));
    server.wait_for_log("new writes use the newest active version");
    let after = server.token_for(&key, "5555555555554444").await;
    server.detokenize(&key, &after, "payout").await;
    assert!(server.terminate().success());

    // Restarted, the vault unwraps its keys through the HSM again and opens both versions.
    let server = vault.serve();
    server.detokenize(&key, &before, "payout").await;
    server.detokenize(&key, &after, "payout").await;
    assert!(server.terminate().success());
    let keys = vault.json_lines(&["keys", "status", "--json"]);
    assert_eq!(keys.iter().filter(|k| k["purpose"] == "data").count(), 2);
    let inventory = vault.json_lines(&["keys", "inventory"]);
    assert_eq!(inventory[0]["provider"], "pkcs11");

    // The master key rotates to a new HSM key under dual control; the old one opens nothing.
    let (alice, bob) = vault.two_operators();
    let refused = vault.as_operator(
        &alice,
        &["keys", "rewrap-master", "--new-key-label", "vault-master"],
    );
    assert_eq!(
        refused.status.code(),
        Some(64),
        "the current label is no new key"
    );
    let approved = vault.propose_and_approve(
        (&alice, &bob),
        &["keys", "rewrap-master", "--new-key-label", "vault-master-2"],
        "",
    );
    assert!(
        stdout(&approved).contains("keys.pkcs11.key_label"),
        "{}",
        stdout(&approved)
    );
    let old = vault.command(&["check"]).output().unwrap();
    assert_eq!(
        old.status.code(),
        Some(1),
        "the old HSM key still opens the vault"
    );
    let mut vault = vault;
    vault.env.push((
        "VAULT__KEYS__PKCS11__KEY_LABEL".to_owned(),
        "vault-master-2".to_owned(),
    ));
    assert_success(&vault.run(&["check"]));
    let server = vault.serve();
    server.detokenize(&key, &before, "payout").await;
    assert!(server.terminate().success());

    // The key inside the token cannot be read out: sensitive, never extractable, and asking
    // for its value is refused by the token itself.
    let conf = &env[0].1;
    assert_key_stays_inside(module, conf, "246810");
    // A key the token did not make itself (imported with a known value) is refused, even
    // though it is flagged sensitive and unextractable now.
    let mut imported = vault.command(&["check"]);
    imported.env("VAULT__KEYS__PKCS11__KEY_LABEL", "imported-key");
    let out = imported.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("was not made inside the token"),
        "{}",
        stdout(&out)
    );
}

/// Logs in to the token as the vault does and tries to read the key's bytes.
fn assert_key_stays_inside(module: &str, conf: &str, pin: &str) {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::object::{Attribute, AttributeType, ObjectClass};
    use cryptoki::session::UserType;
    // SoftHSM2 reads its configuration from the environment when initialised: run the check in
    // a child process with it set, since this test process must not change its own environment.
    if std::env::var_os("VAULT_TEST_HSM_PROBE").is_none() {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "key_providers::hsm_probe",
                "--nocapture",
                "--include-ignored",
            ])
            .env("VAULT_TEST_HSM_PROBE", "1")
            .env("SOFTHSM2_CONF", conf)
            .env("HSM_PROBE_MODULE", module)
            .env("HSM_PROBE_PIN", pin)
            .output()
            .unwrap();
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(out.status.success(), "{text}");
        assert!(text.contains("probe: key stays inside"), "{text}");
        return;
    }
    let context = Pkcs11::new(module).unwrap();
    context
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    let slot = context.get_slots_with_initialized_token().unwrap()[0];
    let session = context.open_ro_session(slot).unwrap();
    session.login(UserType::User, Some(&pin.into())).unwrap();
    let keys = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(b"vault-master".to_vec()),
        ])
        .unwrap();
    assert_eq!(keys.len(), 1);
    let attributes = session
        .get_attributes(
            keys[0],
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::NeverExtractable,
                AttributeType::ValueLen,
            ],
        )
        .unwrap();
    for attribute in &attributes {
        match attribute {
            Attribute::Sensitive(v) | Attribute::NeverExtractable(v) => assert!(*v),
            Attribute::Extractable(v) => assert!(!*v),
            Attribute::ValueLen(len) => assert_eq!(u64::from(*len), 32),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(attributes.len(), 4);
    // The token answers a request for the value with an error or without it.
    let value = session.get_attributes(keys[0], &[AttributeType::Value]);
    assert!(
        value.as_ref().map_or(true, Vec::is_empty),
        "the key's value came out: {value:?}"
    );
    // A key imported with a value someone knows, and flagged sensitive and unextractable only
    // afterwards, for the vault to refuse (the parent test points the vault at it).
    let rw = context.open_rw_session(slot).unwrap();
    rw.create_object(&[
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(cryptoki::object::KeyType::AES),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Value(vec![7u8; 32]),
        Attribute::Label(b"imported-key".to_vec()),
    ])
    .unwrap();
    eprintln!("probe: key stays inside");
}

/// Not a test of its own: [`assert_key_stays_inside`] runs it in a child process.
#[test]
#[ignore = "run by an_hsm_holds_the_master_key_through_init_serve_rotate_and_restart"]
fn hsm_probe() {
    if std::env::var_os("VAULT_TEST_HSM_PROBE").is_none() {
        return;
    }
    let module = std::env::var("HSM_PROBE_MODULE").unwrap();
    let conf = std::env::var("SOFTHSM2_CONF").unwrap();
    let pin = std::env::var("HSM_PROBE_PIN").unwrap();
    assert_key_stays_inside(&module, &conf, &pin);
}

/// The shares `vault init --provider shamir` printed.
fn shares(init_stdout: &str) -> Vec<String> {
    init_stdout
        .lines()
        .filter_map(|l| {
            l.split_once(": vault-share-v1-")
                .map(|(_, s)| format!("vault-share-v1-{s}"))
        })
        .collect()
}

/// `share` with its body changed and the checksum recomputed, as someone who knows the format
/// could forge it: it parses and belongs to the set, but rebuilds another key.
fn forged(share: &str) -> String {
    let (front, _check) = share.rsplit_once('-').unwrap();
    let (head, body) = front.rsplit_once('-').unwrap();
    let flipped = if body.starts_with('0') { "1" } else { "0" };
    let front = format!("{head}-{flipped}{}", &body[1..]);
    let check = hex::encode(&sha2::Sha256::digest(front.as_bytes())[..4]);
    format!("{front}-{check}")
}

/// `share` with one digit of its body changed, checksum left as it was: a typo.
fn mistyped(share: &str) -> String {
    let (front, check) = share.rsplit_once('-').unwrap();
    let (head, body) = front.rsplit_once('-').unwrap();
    let flipped = if body.starts_with('0') { "1" } else { "0" };
    format!("{head}-{flipped}{}-{check}", &body[1..])
}

fn operator(vault: &VaultDir, args: &[&str], input: &str) -> (bool, serde_json::Value) {
    let out = vault.run_with_stdin(args, input);
    let text = stdout(&out);
    let answer =
        serde_json::from_str(text.trim()).unwrap_or_else(|_| panic!("{text}{}", stderr(&out)));
    (out.status.success(), answer)
}

async fn status_of(server: &super::helpers::Server, path: &str) -> (u16, serde_json::Value) {
    let response = server
        .http
        .get(format!("{}{path}", server.base))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shamir_vault_starts_sealed_and_unseals_only_with_threshold_shares() {
    let socket_dir = tempfile::tempdir().unwrap();
    let socket: PathBuf = socket_dir.path().join("unseal.sock");
    let vault = VaultDir::uninitialised(
        &format!(
            "provider = \"shamir\"\nunseal_socket = \"{}\"\n",
            socket.display()
        ),
        Vec::new(),
    );
    let refused = VaultDir::refused(vault.command(&["init", "--shares", "3", "--threshold", "1"]));
    assert!(refused.contains("--threshold"), "{refused}");
    let made = vault.run(&["init", "--shares", "3", "--threshold", "2"]);
    assert_success(&made);
    let shares = shares(&stdout(&made));
    assert_eq!(shares.len(), 3, "{}", stdout(&made));
    assert!(!vault.path("master.key").exists());
    // A second vault's share, for the wrong-set case.
    let other = VaultDir::uninitialised(
        &format!(
            "provider = \"shamir\"\nunseal_socket = \"{}\"\n",
            socket_dir.path().join("other.sock").display()
        ),
        Vec::new(),
    );
    let other_share = shares_of(&other).remove(0);

    // Commands that run once take the shares on standard input.
    let two = format!("{}\n{}\n", shares[0], shares[2]);
    let created = vault.run_with_stdin(
        &[
            "clients", "create", "--name", "app", "--tenant", "t1", "--scopes", ALL_SCOPES,
        ],
        &two,
    );
    assert_success(&created);
    let key = stdout(&created)
        .lines()
        .find_map(|l| l.strip_prefix("api_key:"))
        .unwrap()
        .trim()
        .to_owned();

    let server = vault.serve();
    assert_eq!(status_of(&server, "/healthz").await.0, 200);
    let (code, body) = status_of(&server, "/readyz").await;
    assert_eq!((code, body["error"].as_str()), (503, Some("sealed")));
    let tokenize = |server: &super::helpers::Server| {
        server
            .http
            .post(format!("{}/v1/tokens", server.base))
            .bearer_auth(&key)
            .json(&serde_json::json!({ "pan": PAN }))
            .send()
    };
    let sealed = tokenize(&server).await.unwrap();
    assert_eq!(sealed.status(), 503);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let (ok, answer) = operator(&vault, &["operator", "status"], "");
    assert!(ok);
    assert_eq!(
        (answer["sealed"].as_bool(), answer["held"].as_u64()),
        (Some(true), Some(0))
    );
    // Garbage and a mistyped share are refused without echoing them.
    let (ok, answer) = operator(
        &vault,
        &["operator", "unseal"],
        "not-a-share-4111111111111111\n",
    );
    assert!(!ok);
    assert!(!answer.to_string().contains("4111111111111111"), "{answer}");
    let (ok, answer) = operator(
        &vault,
        &["operator", "unseal"],
        &format!("{}\n", mistyped(&shares[0])),
    );
    assert!(!ok, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("mistyped"),
        "{answer}"
    );
    // K-1 shares keep it sealed; the same share twice does not count twice.
    let (ok, answer) = operator(&vault, &["operator", "unseal"], &format!("{}\n", shares[0]));
    assert!(ok, "{answer}");
    assert_eq!(
        (answer["held"].as_u64(), answer["threshold"].as_u64()),
        (Some(1), Some(2))
    );
    let (ok, answer) = operator(&vault, &["operator", "unseal"], &format!("{}\n", shares[0]));
    assert!(!ok, "{answer}");
    let (ok, answer) = operator(&vault, &["operator", "unseal"], &format!("{other_share}\n"));
    assert!(!ok, "another vault's share: {answer}");
    assert_eq!(status_of(&server, "/readyz").await.0, 503);
    // A forged share of the right set rebuilds a wrong key: refused without naming which
    // share, and every share held is forgotten.
    let (ok, answer) = operator(
        &vault,
        &["operator", "unseal"],
        &format!("{}\n", forged(&shares[1])),
    );
    assert!(!ok, "{answer}");
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.contains("do not make this vault's master key"),
        "{message}"
    );
    assert!(
        !shares.iter().any(|s| message.contains(&s[s.len() - 20..])),
        "{message}"
    );
    let (_, answer) = operator(&vault, &["operator", "status"], "");
    assert_eq!(
        (answer["sealed"].as_bool(), answer["held"].as_u64()),
        (Some(true), Some(0))
    );
    assert_eq!(tokenize(&server).await.unwrap().status(), 503);

    // Two genuine shares unseal it; it serves.
    for share in [&shares[0], &shares[1]] {
        let (ok, answer) = operator(&vault, &["operator", "unseal"], &format!("{share}\n"));
        assert!(ok, "{answer}");
    }
    server.wait_for_log("vault unsealed");
    assert_eq!(status_of(&server, "/readyz").await.0, 200);
    let created = tokenize(&server).await.unwrap();
    assert_eq!(created.status(), 201);
    let token = created.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    server.detokenize(&key, &token, "payout").await;

    // Sealed again: the keys are dropped, everything but /healthz answers 503.
    let (ok, answer) = operator(&vault, &["operator", "seal"], "");
    assert!(ok, "{answer}");
    assert_eq!(status_of(&server, "/readyz").await.0, 503);
    assert_eq!(tokenize(&server).await.unwrap().status(), 503);
    // Any two shares unseal it again, and the token made before still opens.
    for share in [&shares[2], &shares[1]] {
        let (ok, answer) = operator(&vault, &["operator", "unseal"], &format!("{share}\n"));
        assert!(ok, "{answer}");
    }
    assert_eq!(status_of(&server, "/readyz").await.0, 200);
    server.detokenize(&key, &token, "payout").await;
    assert!(server.terminate().success());
    assert!(!socket.exists(), "the socket is removed at shutdown");

    // Each unseal and seal is in the audit log; no share is in the server's log.
    let events = vault.run_with_stdin(&["audit", "list", "--action", "vault.unseal"], &two);
    assert_success(&events);
    assert_eq!(stdout(&events).lines().count(), 2, "{}", stdout(&events));
    let events = vault.run_with_stdin(&["audit", "list", "--action", "vault.seal"], &two);
    assert_eq!(stdout(&events).lines().count(), 1, "{}", stdout(&events));
    let log = std::fs::read_to_string(server_log(&vault)).unwrap();
    for share in &shares {
        assert!(
            !log.contains(&share[share.len() - 30..]),
            "a share is in the log"
        );
    }
}

/// The one serve log of `vault`.
fn server_log(vault: &VaultDir) -> PathBuf {
    std::fs::read_dir(vault.dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name().is_some_and(|n| {
                n.to_string_lossy().starts_with("serve-") && n.to_string_lossy().ends_with(".log")
            })
        })
        .unwrap()
}

/// Both shares of a freshly initialised Shamir vault (2 of 2).
fn shares_of(vault: &VaultDir) -> Vec<String> {
    let made = vault.run(&["init", "--shares", "2", "--threshold", "2"]);
    assert_success(&made);
    shares(&stdout(&made))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_emptied_database_is_not_unsealed_with_someone_elses_shares() {
    let socket_dir = tempfile::tempdir().unwrap();
    let keys = |name: &str| {
        format!(
            "provider = \"shamir\"\nunseal_socket = \"{}\"\n",
            socket_dir.path().join(name).display()
        )
    };
    let vault = VaultDir::uninitialised(&keys("unseal.sock"), Vec::new());
    assert_success(&vault.run(&["init", "--shares", "2", "--threshold", "2"]));
    // The attacker made a Shamir vault of their own: they hold all its shares.
    let theirs = shares_of(&VaultDir::uninitialised(&keys("theirs.sock"), Vec::new()));
    let server = vault.serve();
    // With write access to the database, they empty it while the vault is sealed...
    vault.sql(
        "DELETE FROM keys; DELETE FROM audit_events; DELETE FROM clients; DELETE FROM tokens; \
         DELETE FROM collect_sessions;",
    );
    // ...and unseal with their shares, so that new keys would be made under their master key.
    let (ok, _) = operator(&vault, &["operator", "unseal"], &format!("{}\n", theirs[0]));
    assert!(ok);
    let (ok, answer) = operator(&vault, &["operator", "unseal"], &format!("{}\n", theirs[1]));
    assert!(!ok, "unsealed with someone else's shares: {answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("makes them only at `vault init"),
        "{answer}"
    );
    assert_eq!(status_of(&server, "/readyz").await.0, 503);
    let made: i64 = rusqlite::Connection::open(vault.path("vault.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(made, 0, "no keys were made under their master key");
    // A command that runs once, given their shares, makes none either.
    let out = vault.run_with_stdin(
        &[
            "clients",
            "create",
            "--name",
            "x",
            "--tenant",
            "t",
            "--scopes",
            "tokens:create",
        ],
        &format!("{}\n{}\n", theirs[0], theirs[1]),
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("makes them only at `vault init"),
        "{}",
        stderr(&out)
    );
    assert!(server.terminate().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_master_key_file_rotates_under_dual_control_and_an_interrupted_rotation_recovers() {
    let vault = VaultDir::new();
    let (_, key) = vault.client("t1", ALL_SCOPES);
    let server = vault.serve();
    let token = server.token_for(&key, PAN).await;
    assert!(server.terminate().success());
    let old = std::fs::read(vault.path("master.key")).unwrap();

    let refused = vault.outcome(&["keys", "rewrap-master"]);
    assert_eq!(refused.0, Some(64), "{}", refused.2);
    let (alice, bob) = vault.two_operators();
    let approved = vault.propose_and_approve((&alice, &bob), &["keys", "rewrap-master"], "");
    assert!(
        stdout(&approved).contains("wrapped under a new master key"),
        "{}",
        stdout(&approved)
    );
    let new = std::fs::read(vault.path("master.key")).unwrap();
    assert_ne!(old, new);
    assert!(!vault.path("master.key.next").exists());
    // The old key file opens nothing any more; the new one opens every token as before.
    write_secret(
        &vault.path("old.key"),
        std::str::from_utf8(&old).unwrap(),
        0o600,
    );
    let mut with_old = vault.command(&["check"]);
    with_old.env("VAULT__KEYS__MASTER_KEY_FILE", vault.path("old.key"));
    let out = with_old.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("does not unwrap"), "{}", stdout(&out));
    let server = vault.serve();
    server.detokenize(&key, &token, "payout").await;
    assert!(server.terminate().success());

    // Interrupted after the keys were rewrapped and before the new file replaced the old one:
    // the next command keeps the file that opens the keys.
    std::fs::rename(vault.path("master.key"), vault.path("master.key.next")).unwrap();
    write_secret(
        &vault.path("master.key"),
        std::str::from_utf8(&old).unwrap(),
        0o600,
    );
    assert_success(&vault.run(&["keys", "status"]));
    assert_eq!(std::fs::read(vault.path("master.key")).unwrap(), new);
    assert!(!vault.path("master.key.next").exists());
    // Interrupted before the rewrap: the unused new key file is moved aside (never deleted:
    // a wrong verdict must lose no key), the key file kept.
    assert_success(&vault.run(&[
        "init",
        "--key-file",
        vault.path("master.key.next").to_str().unwrap(),
    ]));
    let unused = std::fs::read(vault.path("master.key.next")).unwrap();
    assert_success(&vault.run(&["keys", "status"]));
    assert_eq!(std::fs::read(vault.path("master.key")).unwrap(), new);
    assert!(!vault.path("master.key.next").exists());
    let aside: Vec<_> = std::fs::read_dir(vault.dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("master.key.next.unused-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(&aside[0]).unwrap(), unused);
    let server = vault.serve();
    server.detokenize(&key, &token, "payout").await;
    assert!(server.terminate().success());
}

#[test]
fn shamir_shares_are_replaced_by_a_master_key_rotation() {
    let socket_dir = tempfile::tempdir().unwrap();
    let vault = VaultDir::uninitialised(
        &format!(
            "provider = \"shamir\"\nunseal_socket = \"{}\"\n",
            socket_dir.path().join("unseal.sock").display()
        ),
        Vec::new(),
    );
    let made = vault.run(&["init", "--shares", "3", "--threshold", "2"]);
    assert_success(&made);
    let old = shares(&stdout(&made));
    let old_two = format!("{}\n{}\n", old[0], old[1]);
    let (alice, bob) = vault.two_operators_with_stdin(&old_two);
    let refused = vault.as_operator_with_stdin(&alice, &["keys", "rewrap-master"], &old_two);
    assert_eq!(
        refused.status.code(),
        Some(64),
        "a Shamir rotation names its new split"
    );
    // Approved with a configuration for another provider, nothing happens and the proposal is
    // still there to approve (that configuration does not open the vault; were it to, the
    // approval would refuse the mismatch before counting: vault/tests/api/custody.rs).
    let proposed = vault.as_operator_with_stdin(
        &alice,
        &["keys", "rewrap-master", "--shares", "2", "--threshold", "2"],
        &old_two,
    );
    assert_success(&proposed);
    let id = stdout(&proposed)
        .split_whitespace()
        .find(|w| w.starts_with("prp_"))
        .unwrap()
        .trim_end_matches(':')
        .to_owned();
    let mut wrong = vault.command(&["approve", &id]);
    wrong
        .env("VAULT_OPERATOR_KEY", &bob)
        .env("VAULT__KEYS__PROVIDER", "file");
    let out = wrong.output().unwrap();
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        !vault.path("master.key").exists(),
        "no key file was written"
    );
    let approved = vault.as_operator_with_stdin(&bob, &["approve", &id], &old_two);
    assert_success(&approved);
    let new = shares(&stdout(&approved));
    assert_eq!(new.len(), 2, "{}", stdout(&approved));
    // The old shares open nothing any more; the new ones do.
    let out = vault.run_with_stdin(&["keys", "status"], &old_two);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not unwrap"), "{}", stderr(&out));
    let out = vault.run_with_stdin(&["keys", "status"], &format!("{}\n{}\n", new[0], new[1]));
    assert_success(&out);
    let events = vault.run_with_stdin(
        &["audit", "list", "--action", "keys.rewrap_master"],
        &format!("{}\n{}\n", new[1], new[0]),
    );
    assert_eq!(stdout(&events).lines().count(), 1, "{}", stdout(&events));
}

#[test]
fn the_unseal_socket_is_refused_in_a_directory_others_may_write() {
    use std::os::unix::fs::PermissionsExt;
    let shared_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(shared_dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let vault = VaultDir::uninitialised(
        &format!(
            "provider = \"shamir\"\nunseal_socket = \"{}\"\n",
            shared_dir.path().join("unseal.sock").display()
        ),
        Vec::new(),
    );
    assert_success(&vault.run(&["init", "--shares", "2", "--threshold", "2"]));
    // The vault will not listen there: another user could bind the path first and collect the
    // shares operators type...
    let out = vault.command(&["serve"]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("writable by group or others"),
        "{}",
        stderr(&out)
    );
    // ...and an operator's command will not send a share there.
    let out = vault.run_with_stdin(&["operator", "unseal"], "vault-share-v1-x\n");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("writable by group or others"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn production_mode_refuses_the_key_file_unless_allowed_and_keys_made_for_development() {
    let production = |vault: &VaultDir| {
        let path = vault.path("vault.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("mode = \"production\"\n{text}")).unwrap();
    };
    // Keys made by a development vault (as every test and every laptop makes them)...
    let mut dev = VaultDir::new();
    assert!(dev.serve().terminate().success());
    production(&dev);
    let out = dev.command(&["serve"]).output().unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(
        said.contains("keys.provider") && said.contains("keys.allow_file_provider = true"),
        "{said}"
    );
    let check = dev.command(&["check"]).output().unwrap();
    assert_eq!(check.status.code(), Some(1));
    assert!(
        stdout(&check).contains("keys.allow_file_provider"),
        "{}",
        stdout(&check)
    );
    // ...are refused in production even with the key file allowed (and the helper's debug
    // logging, which production refuses too, turned down).
    dev.env.push((
        "VAULT__KEYS__ALLOW_FILE_PROVIDER".to_owned(),
        "true".to_owned(),
    ));
    dev.env
        .push(("VAULT__LOG__FILTER".to_owned(), "info".to_owned()));
    let out = dev.command(&["serve"]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("its keys were made in development mode"),
        "{}",
        stderr(&out)
    );
    // A vault made in production mode starts, and says the key file was allowed on purpose.
    let mut vault = VaultDir::uninitialised("", Vec::new());
    production(&vault);
    assert_success(&vault.run(&["init"]));
    vault.env.push((
        "VAULT__KEYS__ALLOW_FILE_PROVIDER".to_owned(),
        "true".to_owned(),
    ));
    vault
        .env
        .push(("VAULT__LOG__FILTER".to_owned(), "info".to_owned()));
    let server = vault.serve();
    server.wait_for_log("accepted because keys.allow_file_provider = true");
    assert!(server.terminate().success());
}
