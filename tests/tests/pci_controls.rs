//! The map from PCI DSS requirement to control to test cannot go stale: `docs/pci-controls.md` must
//! be exactly what `docs/pci-controls.toml` generates, every test it names must exist (the file,
//! and a `fn` of that name in it), every one of the 40 cases must be listed once with a status,
//! and a case called tested or partly must name a test. `UPDATE_DOCS=1 cargo test -p tests --test
//! pci_controls` rewrites the Markdown.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Map {
    requirement: Vec<Requirement>,
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Requirement {
    id: String,
    text: String,
    control: String,
    tests: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    n: u32,
    title: String,
    status: String,
    #[serde(default)]
    note: Option<String>,
    tests: Vec<String>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn load() -> Map {
    let text = std::fs::read_to_string(root().join("docs/pci-controls.toml")).unwrap();
    toml::from_str(&text).unwrap_or_else(|e| panic!("docs/pci-controls.toml: {e}"))
}

/// Why `reference` (`path::function`) names no test, if it does not.
fn missing(reference: &str) -> Option<String> {
    let Some((file, function)) = reference.split_once("::") else {
        return Some(format!("{reference}: not path::function"));
    };
    let Ok(source) = std::fs::read_to_string(root().join(file)) else {
        return Some(format!("{reference}: no file {file}"));
    };
    let defined = [format!("fn {function}("), format!("fn {function}<")]
        .iter()
        .any(|needle| source.contains(needle.as_str()));
    (!defined).then(|| format!("{reference}: no fn {function} in {file}"))
}

fn tests_cell(tests: &[String]) -> String {
    if tests.is_empty() {
        return "(none)".to_owned();
    }
    tests
        .iter()
        .map(|t| {
            let (file, function) = t.split_once("::").unwrap_or((t, ""));
            format!("`{file}` `{function}`")
        })
        .collect::<Vec<_>>()
        .join("<br>")
}

fn render(map: &Map) -> String {
    let mut out = String::new();
    out.push_str(
        "# PCI DSS controls and the tests that prove them\n\n\
         Generated from `docs/pci-controls.toml` by `tests/tests/pci_controls.rs`, which fails when a \
         test named here does not exist or this file is stale (`UPDATE_DOCS=1 cargo test -p tests \
         --test pci_controls` rewrites it). The requirements are those of PCI DSS v4.0.1 that this \
         software addresses; the operator's own duties (policies, reviews, network scans) are not \
         listed. SECURITY.md has the threat model behind them.\n\n\
         ## Requirements\n\n\
         | requirement | what it asks | the control | proved by |\n|---|---|---|---|\n",
    );
    for r in &map.requirement {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            r.id,
            r.text,
            r.control,
            tests_cell(&r.tests)
        );
    }
    let count = |status: &str| map.case.iter().filter(|c| c.status == status).count();
    let _ = write!(
        out,
        "\n## The 40 test cases\n\n\
         {} tested, {} partly, {} not yet.\n\n\
         | case | what | status | proved by |\n|---|---|---|---|\n",
        count("tested"),
        count("partly"),
        count("not yet")
    );
    for c in &map.case {
        let status = match &c.note {
            Some(note) => format!("{}: {note}", c.status),
            None => c.status.clone(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            c.n,
            c.title,
            status,
            tests_cell(&c.tests)
        );
    }
    out
}

#[test]
fn every_named_test_exists_and_every_case_has_a_status() {
    let map = load();
    let problems: Vec<String> = map
        .requirement
        .iter()
        .flat_map(|r| &r.tests)
        .chain(map.case.iter().flat_map(|c| &c.tests))
        .filter_map(|t| missing(t))
        .collect();
    assert!(
        problems.is_empty(),
        "docs/pci-controls.toml names tests that do not exist:\n{}",
        problems.join("\n")
    );
    let numbers: Vec<u32> = map.case.iter().map(|c| c.n).collect();
    assert_eq!(
        numbers,
        (1..=40).collect::<Vec<_>>(),
        "the 40 cases, once each, in order"
    );
    for c in &map.case {
        assert!(
            ["tested", "partly", "not yet"].contains(&c.status.as_str()),
            "case {}: status {:?}",
            c.n,
            c.status
        );
        assert!(
            c.status == "not yet" || !c.tests.is_empty(),
            "case {} is {} but names no test",
            c.n,
            c.status
        );
        assert!(
            c.status == "tested" || c.note.is_some(),
            "case {} is {}: say why in a note",
            c.n,
            c.status
        );
    }
    for r in &map.requirement {
        assert!(!r.tests.is_empty(), "requirement {} names no test", r.id);
    }
}

#[test]
fn a_test_that_does_not_exist_is_caught() {
    assert!(missing("tests/tests/pci_controls.rs::a_test_that_does_not_exist_is_caught").is_none());
    assert!(missing("tests/tests/pci_controls.rs::no_such_test").is_some());
    assert!(missing("tests/tests/no_such_file.rs::anything").is_some());
    assert!(missing("no separator").is_some());
}

#[test]
fn the_committed_controls_document_is_what_the_map_generates() {
    let generated = render(&load());
    let path = root().join("docs/pci-controls.md");
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/pci-controls.md is stale: regenerate it with \
         `UPDATE_DOCS=1 cargo test -p tests --test pci_controls` and commit it"
    );
}
