//! The audit log's anchors outside the database, and commands that must not change what they
//! look at: checkpoints and `audit verify --expect` catch a cut tail (PCI DSS §5 case 17),
//! keys are never made for a database that has content, reading commands open read-only, and
//! an older database is upgraded only on purpose.

use crate::helpers::{ALL_SCOPES, Server, VaultDir, create_client};

/// Makes the vault write checkpoints to `checkpoints.jsonl`: at shutdown and after command-line
/// writes, and every `interval_seconds` too when given.
fn write_checkpoints(vault: &VaultDir, interval_seconds: Option<u64>) {
    let file = vault.path("checkpoints.jsonl");
    let mut audit = format!("[audit]\ncheckpoint_file = \"{}\"\n", file.display());
    if let Some(seconds) = interval_seconds {
        audit.push_str(&format!("checkpoint_interval_seconds = {seconds}\n"));
    }
    vault.configure(&audit);
}

/// A vault checkpointing every second, serving, whose log holds a client, a token and `n`
/// detokenizes of it.
async fn serving_with_events(n: usize) -> (VaultDir, Server) {
    let vault = VaultDir::new();
    write_checkpoints(&vault, Some(1));
    let (_, key) = vault.client("acme", ALL_SCOPES);
    let server = vault.serve();
    let token = server.token_for(&key, "4242424242424242").await;
    for _ in 0..n {
        server.detokenize(&key, &token, "anchor test").await;
    }
    (vault, server)
}

/// `audit verify` against the checkpoint file `name` instead of the configured one.
fn verify_against(vault: &VaultDir, name: &str) -> (Option<i32>, String, String) {
    let file = vault.path(name).display().to_string();
    vault.outcome(&["audit", "verify", "--checkpoint-file", &file])
}

/// How many keys the database file `name` holds.
fn keys_in(vault: &VaultDir, name: &str) -> i64 {
    rusqlite::Connection::open(vault.path(name))
        .unwrap()
        .query_row("SELECT count(*) FROM keys", [], |r| r.get(0))
        .unwrap()
}

/// `SEQ:MAC` from `audit verify`'s output.
fn head_of(verify_stdout: &str) -> String {
    verify_stdout
        .split("head ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn pci_17_truncation_is_detected_by_checkpoints_and_expected_heads() {
    let (vault, server) = serving_with_events(4).await;
    assert!(server.terminate().success());

    // The shutdown wrote a checkpoint of the head, which verify checks.
    let lines = std::fs::read_to_string(vault.path("checkpoints.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
    let (code, out, _) = vault.outcome(&["audit", "verify"]);
    assert_eq!(code, Some(0), "{out}");
    let head = head_of(&out);
    assert_eq!(
        head,
        format!("{}:{}", last["seq"], last["mac"].as_str().unwrap()),
        "the last checkpoint is the head"
    );
    assert!(out.contains("from checkpoints"), "{out}");
    let (code, out, _) = vault.outcome(&["audit", "verify", "--expect", &head]);
    assert_eq!(code, Some(0), "{out}");

    // Cut the last two events off: the chain that is left is valid on its own...
    let seq: u64 = head.split(':').next().unwrap().parse().unwrap();
    vault.sql(&format!(
        "DELETE FROM audit_events WHERE seq > {};",
        seq - 2
    ));
    let (code, out, _) = verify_against(&vault, "none.jsonl");
    assert_eq!(code, Some(0), "without anchors the cut is invisible: {out}");
    // ... but not against the checkpoint file, nor against a head recorded earlier.
    let (code, out, _) = vault.outcome(&["audit", "verify"]);
    assert_eq!(code, Some(1), "{out}");
    // The first checkpointed event past the cut: the shutdown's, or one an interval wrote.
    let at_cut = [seq - 1, seq]
        .iter()
        .any(|s| out.contains(&format!("broken at event {s}:")));
    assert!(at_cut && out.contains("cut off the end"), "{out}");
    let (code, out, _) = vault.outcome(&[
        "audit",
        "verify",
        "--checkpoint-file",
        &vault.path("none.jsonl").display().to_string(),
        "--expect",
        &head,
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("cut off the end"), "{out}");
    // A wiped database is refused too, before any key is made for it.
    let mut wiped = vault.command(&["serve"]);
    wiped.env("VAULT__DATABASE__PATH", vault.path("wiped.db"));
    let stderr = VaultDir::refused(wiped);
    assert!(
        stderr.contains("the database is empty, but the checkpoint file"),
        "{stderr}"
    );
    assert_eq!(
        keys_in(&vault, "wiped.db"),
        0,
        "keys were made for the wiped database"
    );
    // And the vault refuses to start on it.
    let stderr = VaultDir::refused(vault.command(&["serve"]));
    assert!(
        stderr.contains(&format!("the chain does not hold event {seq}")),
        "{stderr}"
    );

    // A wrong MAC or a malformed --expect.
    let wrong = format!("{}:{}", seq - 2, "00".repeat(32));
    let (code, out, _) = vault.outcome(&["audit", "verify", "--expect", &wrong]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("external checkpoint"), "{out}");
    let (code, _, err) = vault.outcome(&["audit", "verify", "--expect", "12:zz"]);
    assert_eq!(code, Some(64), "{err}");

    // A checkpoint line edited (or forged without the key) is refused.
    let forged = lines.replace(&format!("\"seq\":{seq}"), &format!("\"seq\":{}", seq - 2));
    std::fs::write(vault.path("forged.jsonl"), forged).unwrap();
    let (code, out, _) = verify_against(&vault, "forged.jsonl");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("tag does not verify"), "{out}");
}

#[tokio::test]
async fn a_running_vault_writes_checkpoints_on_its_interval() {
    let (vault, server) = serving_with_events(1).await;
    // Progress, not time: wait until a checkpoint holds the head we made (4 events: keys,
    // client, tokenize, detokenize), while the vault still runs.
    let deadline = std::time::Instant::now() + crate::helpers::READY_DEADLINE;
    loop {
        let text = std::fs::read_to_string(vault.path("checkpoints.jsonl")).unwrap_or_default();
        let seqs: Vec<u64> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["seq"].as_u64())
            .collect();
        if seqs.contains(&4) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint: {text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(vault.path("checkpoints.jsonl"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o077, 0, "the checkpoint file is readable by others");
    drop(server);
}

#[test]
fn keys_are_never_made_for_a_database_with_content() {
    let vault = VaultDir::new();
    let _ = vault.client("acme", ALL_SCOPES);
    vault.sql("DELETE FROM keys;");
    for args in [
        &["serve"][..],
        &["clients", "list"],
        &create_client("x", "acme", "tokens:read"),
        &["audit", "verify"],
        &["audit", "list"],
    ] {
        let (code, _, err) = vault.outcome(args);
        assert_ne!(code, Some(0), "{args:?} succeeded");
        assert!(
            err.contains("holds tokens, clients or audit events but no keys"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(keys_in(&vault, "vault.db"), 0, "a command made keys");
}

#[test]
fn reading_commands_open_the_database_read_only() {
    let vault = VaultDir::new();
    // Pointed at a database that does not exist: an error, and still no file.
    let missing = vault.path("elsewhere.db");
    for args in [&["audit", "verify"][..], &["audit", "list"]] {
        let mut elsewhere = vault.command(args);
        elsewhere.env("VAULT__DATABASE__PATH", &missing);
        let err = VaultDir::refused(elsewhere);
        assert!(err.contains("no vault database at"), "{args:?}: {err}");
        assert!(!missing.exists(), "{args:?} created a database");
    }
    // A migrated database without keys: nothing to verify, and no keys made.
    assert!(vault.run(&["migrate"]).status.success());
    let (code, _, err) = vault.outcome(&["audit", "verify"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no vault keys yet"), "{err}");
    // A real one: verify and list leave every byte of it alone.
    let _ = vault.client("acme", ALL_SCOPES);
    let files =
        || ["vault.db", "vault.db-wal"].map(|f| std::fs::read(vault.path(f)).unwrap_or_default());
    let before = files();
    assert!(vault.run(&["audit", "verify"]).status.success());
    assert!(vault.run(&["audit", "list"]).status.success());
    assert!(before == files(), "a reading command changed the database");
}

/// A vault directory holding the fixture database an older vault made (tests/fixtures/legacy).
fn legacy_vault() -> VaultDir {
    let vault = VaultDir::new();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legacy");
    for f in ["vault.db-wal", "vault.db-shm"] {
        let _ = std::fs::remove_file(vault.path(f));
    }
    std::fs::copy(fixtures.join("vault.db"), vault.path("vault.db")).unwrap();
    std::fs::copy(fixtures.join("master.key"), vault.path("master.key")).unwrap();
    for f in ["vault.db", "master.key"] {
        std::fs::set_permissions(
            vault.path(f),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
    }
    vault
}

#[test]
fn an_older_database_is_upgraded_only_on_purpose() {
    let vault = legacy_vault();
    let stderr = VaultDir::refused(vault.command(&["serve"]));
    assert!(stderr.contains("run `vault upgrade` once"), "{stderr}");
    let (code, out, err) = vault.outcome(&["upgrade"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("sealed 2 client rows"), "{out}");
    let (_, out, _) = vault.outcome(&["upgrade"]);
    assert!(out.contains("nothing to upgrade"), "{out}");
    let (code, out, _) = vault.outcome(&["clients", "list"]);
    assert_eq!(code, Some(0));
    assert_eq!(out.matches("active").count(), 1, "{out}");
    assert_eq!(out.matches("revoked").count(), 1, "{out}");
    let (code, out, _) = vault.outcome(&["audit", "verify"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("client rows agree"), "{out}");
}

/// Upgrade seals the rows it finds, so an attacker with the database would slip a row in and
/// make the vault ask for an upgrade. It seals only rows the verified audit chain vouches for.
#[test]
fn upgrade_refuses_rows_the_audit_chain_does_not_vouch_for() {
    // A row slipped into an older database before its upgrade.
    let vault = legacy_vault();
    vault.sql(
        "INSERT INTO clients (id, name, tenant, scopes, key_hash, created_at, revoked_at)
         VALUES ('cli_0000000000000000Forged', 'ops', 'acme', 'tokens:detokenize', x'00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff', 0, NULL);",
    );
    let (code, _, err) = vault.outcome(&["upgrade"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("cli_0000000000000000Forged: no client.create event"),
        "{err}"
    );
    let err = vault.outcome(&["serve"]).2;
    assert!(
        err.contains("run `vault upgrade` once"),
        "nothing was upgraded: {err}"
    );

    // A revocation undone in an older database before its upgrade.
    let vault = legacy_vault();
    vault.sql("UPDATE clients SET revoked_at = NULL;");
    let (code, _, err) = vault.outcome(&["upgrade"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("revoked in the audit chain"), "{err}");

    // A current database whose client key was deleted to force an upgrade.
    let vault = VaultDir::new();
    let _ = vault.client("acme", ALL_SCOPES);
    vault.sql(
        "DELETE FROM keys WHERE purpose = 'client'; UPDATE clients SET mac = NULL;
         INSERT INTO clients (id, name, tenant, scopes, key_hash, created_at, revoked_at)
         VALUES ('cli_0000000000000000Forged', 'ops', 'acme', 'tokens:detokenize', x'00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff', 0, NULL);",
    );
    let (code, _, err) = vault.outcome(&["upgrade"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("already had a client key"), "{err}");
}

/// Commands write checkpoints too: a revocation made by the command line, cut off the end of
/// the log together with the row put back as it was, is caught by `audit verify` (no running
/// vault remembers that event).
#[test]
fn command_line_writes_are_checkpointed() {
    let vault = VaultDir::new();
    write_checkpoints(&vault, None);
    let (id, _) = vault.client("acme", ALL_SCOPES);
    vault.sql("CREATE TABLE saved AS SELECT * FROM clients;");
    assert!(vault.run(&["clients", "revoke", &id]).status.success());
    let lines = std::fs::read_to_string(vault.path("checkpoints.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 2, "{lines}");
    assert!(
        lines.lines().last().unwrap().starts_with("{\"seq\":3,"),
        "{lines}"
    );
    vault.sql(
        "DELETE FROM audit_events WHERE seq = 3;
         DELETE FROM clients; INSERT INTO clients SELECT * FROM saved; DROP TABLE saved;",
    );
    let (code, out, _) = vault.outcome(&["audit", "verify"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("broken at event 3") && out.contains("cut off the end"),
        "{out}"
    );
}
