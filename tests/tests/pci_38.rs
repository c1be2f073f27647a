//! PCI DSS §5 case 38: MACs, API-key hashes, secrets and card numbers are compared in constant
//! time. Two checks: the types that hold keys have no `==` at all (a compile-time fact), and a
//! scan of the workspace's non-test code fails on any `==`/`!=` whose operand is named like a
//! secret, or any derived `PartialEq` over a secret-named field stored as plain bytes or text.
#![allow(clippy::unwrap_used, clippy::panic, reason = "a test")]

use std::path::{Path, PathBuf};

use regex::Regex;

// Key material: no equality at all.
static_assertions::assert_not_impl_any!(vault::crypto::MasterKey: PartialEq);
static_assertions::assert_not_impl_any!(vault::crypto::AuditKey: PartialEq);
static_assertions::assert_not_impl_any!(vault::crypto::FingerprintKey: PartialEq);
static_assertions::assert_not_impl_any!(vault::crypto::ClientKey: PartialEq);
static_assertions::assert_not_impl_any!(shared::ids::ApiKey: PartialEq);
static_assertions::assert_not_impl_any!(vault::auth::ClientRecord: PartialEq);
static_assertions::assert_not_impl_any!(vault::audit::AuditEvent: PartialEq);

/// Names of values whose comparison is an authentication decision.
const SECRET_NAME: &str = r"(?:mac|tag|key_hash|signature|sig|secret|hmac|digest|pan|api_key|password|[a-z_]+_(?:mac|tag|secret|signature|key_hash))";

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The non-test code of a file: up to its `#[cfg(test)]` module (kept last by convention),
/// without line comments.
fn code(path: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let end = text.find("#[cfg(test)]").unwrap_or(text.len());
    text[..end]
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let code = l.split("//").next().unwrap_or_default();
            (i + 1, code.to_owned())
        })
        .collect()
}

fn offenders(root: &Path) -> Vec<String> {
    let compare = Regex::new(&format!(
        r"(?:\b{SECRET_NAME}\b(?:\([^()]*\))?(?:\[[^\]]*\])?\s*(?:==|!=)[^=])|(?:[^=!<>](?:==|!=)\s*[&*]*(?:[\w.]+\.)?{SECRET_NAME}\b)"
    ))
    .unwrap();
    let derive = Regex::new(
        r"(?s)#\[derive\(([^)]*)\)\]\s*(?:#\[[^\]]*\]\s*)*pub(?:\([a-z]+\))?\s+struct\s+(\w+)\s*\{(.*?)\n\}",
    )
    .unwrap();
    let field = Regex::new(&format!(
        r"pub(?:\([a-z]+\))?\s+({SECRET_NAME})\s*:\s*(\[u8;|Vec<u8>|String|Option<String>)"
    ))
    .unwrap();
    let mut found = Vec::new();
    for crate_dir in ["shared/src", "vault/src", "proxy/src", "tests/src"] {
        let mut files = Vec::new();
        sources(&root.join(crate_dir), &mut files);
        for file in files {
            let lines = code(&file);
            for (n, line) in &lines {
                if compare.is_match(line) {
                    found.push(format!("{}:{n}: {}", file.display(), line.trim()));
                }
            }
            let text: String = lines.iter().map(|(_, l)| format!("{l}\n")).collect();
            for m in derive.captures_iter(&text) {
                if !m[1].contains("PartialEq") {
                    continue;
                }
                for f in field.captures_iter(&m[3]) {
                    found.push(format!(
                        "{}: struct {} derives PartialEq over secret field `{}` ({}); use shared::ct::Tag32 or compare with shared::ct",
                        file.display(),
                        &m[2],
                        &f[1],
                        &f[2]
                    ));
                }
            }
        }
    }
    found
}

#[test]
fn pci_38_secrets_are_never_compared_with_eq() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let found = offenders(root);
    assert!(
        found.is_empty(),
        "secrets compared with ==:\n{}",
        found.join("\n")
    );
}

/// The scan itself catches what it is for (so it cannot pass by matching nothing).
#[test]
fn the_scan_finds_planted_comparisons() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("vault/src");
    std::fs::create_dir_all(&src).unwrap();
    for other in ["shared/src", "proxy/src", "tests/src"] {
        std::fs::create_dir_all(dir.path().join(other)).unwrap();
    }
    std::fs::write(
        src.join("planted.rs"),
        "fn a(e: &E, mac: [u8; 32]) -> bool { e.mac == mac }\n\
         fn b(x: &X) -> bool { x.key_hash != other.key_hash }\n\
         fn c(s: &S, t: &[u8]) -> bool { s.compute_tag(t) == *s.expected_tag }\n\
         fn d(a: u32, b: u32) -> bool { a == b }\n\
         fn e(p: &Pan, q: &Pan) -> bool { p == q }\n\
         #[derive(Clone, PartialEq)]\npub struct Row {\n    pub id: u32,\n    pub webhook_secret: String,\n}\n",
    )
    .unwrap();
    let found = offenders(dir.path());
    assert_eq!(found.len(), 4, "{found:#?}");
    assert!(found.iter().any(|f| f.contains("webhook_secret")));
    assert!(!found.iter().any(|f| f.contains("a == b")));
}
