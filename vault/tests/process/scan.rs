//! `vault scan`: card numbers planted in a log file, a database dump, a base64 blob, a hex
//! capture, UTF-16 text and a real SQLite database file are each found, printed masked with
//! the file and the byte offset; clean files (timestamps, order ids, tokens, hashes) find
//! nothing; links are not followed; standard input is scanned; a path that cannot be read makes
//! the result incomplete rather than clean.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use base64::Engine as _;

use crate::helpers::VAULT;

const CARDS: [&str; 6] = [
    "4111111111111111",
    "5555555555554444",
    "378282246310005",
    "2200000000000004",
    "6011111111111117",
    "3530111333300000",
];

fn scan(args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(VAULT)
        .arg("scan")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // No configuration anywhere: the scanner must not need one.
        .env_remove("VAULT_CONFIG")
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// No card number, in any encoding, in what the scanner printed.
fn assert_no_card_in(out: &Output) {
    for card in CARDS {
        let pan = shared::pan::Pan::parse(card).unwrap();
        for stream in [&out.stdout, &out.stderr] {
            assert!(
                !shared::scan::contains_pan_any_encoding(stream, &pan),
                "the scanner printed a card number: {}",
                text(stream)
            );
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// Clean files a real host has: timestamps, order and payout ids, tokens, hashes, amounts.
fn plant_clean(dir: &Path) {
    std::fs::create_dir_all(dir.join("clean/nested")).unwrap();
    write(
        dir,
        "clean/app.log",
        b"2026-12-04T18:14:28.123456Z INFO payout pay_7QveIRNsUE0B4yzZOMB0Vn succeeded amount=150000\n\
          2026-12-04T18:14:29Z INFO order ORD-20261201-000123 account 40817810099910004312 ts=1796408436123\n\
          token tok_2irmxaa8G8hmSyYQjDSJdV fingerprint fp_c7hIbzOKFyAObRnFW3a9L0xmHlvTxO2_3pRau2S-G_Y\n\
          sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 card 411111******1111\n",
    );
    write(
        dir,
        "clean/nested/events.json",
        format!(
            "{{\"payload\":\"{}\",\"phone\":\"+7 999 123-45-67\"}}\n",
            b64(b"{\"last4\":\"1111\",\"amount\":150000,\"currency\":\"RUB\"}")
        )
        .as_bytes(),
    );
}

#[test]
fn card_numbers_planted_in_every_kind_of_file_are_found_and_clean_files_are_clean() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    plant_clean(root);
    std::fs::create_dir_all(root.join("dirty/db")).unwrap();
    // A log line with a spaced card number, at a known offset.
    let log = format!(
        "2026-12-04T18:00:00Z INFO request\n2026-12-04T18:00:01Z WARN body card={} exp=12/30\n",
        "4111 1111 1111 1111"
    );
    let log_offset = log.find("4111").unwrap();
    write(root, "dirty/app.log", log.as_bytes());
    // A pg_dump-style dump with a card in a COPY row.
    write(
        root,
        "dirty/db/app.sql",
        format!(
            "COPY public.orders (id, note) FROM stdin;\n1\tpaid\n2\tcustomer wrote {} in the note\n\\.\n",
            CARDS[1]
        )
        .as_bytes(),
    );
    // A base64 blob of a JSON body (an exported queue message).
    write(
        root,
        "dirty/queue.jsonl",
        format!(
            "{{\"id\":1,\"body\":\"{}\"}}\n",
            b64(format!("{{\"pan\":\"{}\",\"cvv\":\"123\"}}", CARDS[2]).as_bytes())
        )
        .as_bytes(),
    );
    // A hex capture and UTF-16 text.
    let hex: String = CARDS[3].bytes().map(|b| format!("{b:02x}")).collect();
    write(
        root,
        "dirty/capture.txt",
        format!("0000: {hex}\n").as_bytes(),
    );
    let utf16: Vec<u8> = format!("note {}", CARDS[4])
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    write(root, "dirty/notes.utf16", &utf16);
    // A real SQLite database file of an app that stored a card number.
    let db = rusqlite::Connection::open(root.join("dirty/db/app.db")).unwrap();
    db.execute_batch("CREATE TABLE customers (id INTEGER PRIMARY KEY, card TEXT);")
        .unwrap();
    db.execute("INSERT INTO customers (card) VALUES (?1)", [CARDS[5]])
        .unwrap();
    drop(db);
    // A link to a dirty file: never followed, so found once (in the file itself).
    std::os::unix::fs::symlink(root.join("dirty/app.log"), root.join("clean/link.log")).unwrap();

    let clean = scan(&[root.join("clean").to_str().unwrap()], None);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean.stderr));
    assert!(clean.stdout.is_empty(), "{}", text(&clean.stdout));
    let err = text(&clean.stderr);
    assert!(
        err.contains("vault scan: clean: no card number in 2 files"),
        "{err}"
    );
    assert!(
        err.contains("link.log: a symbolic link (never followed)"),
        "{err}"
    );

    let dirty = scan(&[root.to_str().unwrap()], None);
    assert_eq!(dirty.status.code(), Some(1), "{}", text(&dirty.stderr));
    assert_no_card_in(&dirty);
    let out = text(&dirty.stdout);
    for (file, masked, encoding) in [
        ("dirty/app.log", "411111******1111", "plain"),
        ("dirty/db/app.sql", "555555******4444", "plain"),
        ("dirty/queue.jsonl", "378282*****0005", "base64"),
        ("dirty/capture.txt", "220000******0004", "hex"),
        ("dirty/notes.utf16", "601111******1117", "plain"),
        ("dirty/db/app.db", "353011******0000", "plain"),
    ] {
        let found: Vec<&str> = out.lines().filter(|l| l.contains(file)).collect();
        assert_eq!(found.len(), 1, "{file}: {out}");
        assert!(
            found[0].ends_with(&format!(": {masked} ({encoding})")),
            "{}",
            found[0]
        );
    }
    assert_eq!(out.lines().count(), 6, "{out}");
    let line = out.lines().find(|l| l.contains("dirty/app.log")).unwrap();
    assert!(line.contains(&format!("app.log:{log_offset}: ")), "{line}");
    assert!(
        text(&dirty.stderr).contains("6 card numbers found in 6 of 8 files"),
        "{}",
        text(&dirty.stderr)
    );

    // The same as one JSON document.
    let json = scan(&["--json", root.join("dirty").to_str().unwrap()], None);
    assert_eq!(json.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let findings = doc["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 6, "{doc}");
    let log_finding = findings
        .iter()
        .find(|f| f["path"].as_str().unwrap().ends_with("dirty/app.log"))
        .unwrap();
    assert_eq!(log_finding["offset"], log_offset);
    assert_eq!(log_finding["masked"], "411111******1111");
    assert_eq!(doc["files"], 6);
    assert_eq!(doc["card_numbers"], 6);
    assert_eq!(doc["files_with_card_numbers"], 6);
    assert_no_card_in(&json);

    // Standard input: a dump piped in.
    let piped = scan(&["-"], Some(format!("row\t{}\n", CARDS[0]).as_bytes()));
    assert_eq!(piped.status.code(), Some(1));
    assert!(
        text(&piped.stdout).starts_with("-:4: 411111******1111 (plain)"),
        "{}",
        text(&piped.stdout)
    );

    // Named on the command line, a link is followed and read.
    let named = scan(&[root.join("clean/link.log").to_str().unwrap()], None);
    assert_eq!(named.status.code(), Some(1), "{}", text(&named.stderr));
    // A compressed file cannot be read as it is: incomplete, with the command that would.
    write(
        root,
        "clean/old.log.1.gz",
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03",
    );
    let gz = scan(&[root.join("clean").to_str().unwrap()], None);
    assert_eq!(gz.status.code(), Some(3), "{}", text(&gz.stderr));
    assert!(
        text(&gz.stderr).contains(
            "old.log.1.gz: compressed, not scanned: gzip: scan `zcat FILE | vault scan -`"
        ),
        "{}",
        text(&gz.stderr)
    );
    std::fs::remove_file(root.join("clean/old.log.1.gz")).unwrap();
    // /proc is not walked (its files never end or block), and says so.
    let with_proc = scan(&[root.join("clean").to_str().unwrap(), "/proc"], None);
    assert_eq!(
        with_proc.status.code(),
        Some(0),
        "{}",
        text(&with_proc.stderr)
    );
    assert!(
        text(&with_proc.stderr)
            .contains("/proc: proc, a kernel pseudo-filesystem: not data, not walked"),
        "{}",
        text(&with_proc.stderr)
    );
    // Nothing to read is not clean either.
    std::fs::create_dir(root.join("empty")).unwrap();
    let empty = scan(&[root.join("empty").to_str().unwrap()], None);
    assert_eq!(empty.status.code(), Some(3));
    assert!(
        text(&empty.stderr).contains("INCOMPLETE: no file was read"),
        "{}",
        text(&empty.stderr)
    );

    // A path that is not there: not clean, incomplete.
    let missing = scan(
        &[
            root.join("clean").to_str().unwrap(),
            root.join("gone").to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(missing.status.code(), Some(3), "{}", text(&missing.stderr));
    assert!(
        text(&missing.stderr).contains("INCOMPLETE"),
        "{}",
        text(&missing.stderr)
    );
}

#[test]
fn a_path_holding_a_card_number_is_printed_masked() {
    let dir = tempfile::tempdir().unwrap();
    let named = dir.path().join(format!("export-{}.csv", CARDS[0]));
    std::fs::write(&named, format!("card,{}\n", CARDS[1])).unwrap();
    // Glued to a date, a Luhn window could start in the date and leave the card's digits out
    // of the mask: the whole run is masked instead.
    // (In a directory whose name ends in a letter: a digit ending the temporary directory's
    // random name would join the run across the `/`.)
    std::fs::create_dir(dir.path().join("reports")).unwrap();
    let dated = dir
        .path()
        .join(format!("reports/20261204-{}.csv", CARDS[1]));
    std::fs::write(&dated, format!("card,{}\n", CARDS[2])).unwrap();
    let out = scan(&[dir.path().to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("/reports/202612**-************4444.csv:5: 378282*****0005 (plain)"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("20261204") && !stdout.contains("5555555555"),
        "{stdout}"
    );
    assert!(
        text(&out.stdout).contains("export-411111******1111.csv:5: 555555******4444"),
        "{}",
        text(&out.stdout)
    );
    assert_no_card_in(&out);
}
