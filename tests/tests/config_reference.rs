//! The configuration reference cannot go stale: `docs/CONFIGURATION.md` must be exactly what the
//! configuration types generate (`shared::reference`), and every setting must be explained.
//! `UPDATE_DOCS=1 cargo test -p tests --test config_reference` rewrites the file.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

use std::path::Path;

#[test]
fn the_committed_configuration_reference_is_what_the_types_generate() {
    let generated = shared::reference::document(&[
        vault::config::reference().unwrap(),
        proxy::config::reference().unwrap(),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/CONFIGURATION.md");
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/CONFIGURATION.md is stale: regenerate it with \
         `UPDATE_DOCS=1 cargo test -p tests --test config_reference` and commit it"
    );
}

#[test]
fn the_reference_examples_load() {
    let dir = tempfile::tempdir().unwrap();
    let vault_file = dir.path().join("vault.toml");
    std::fs::write(&vault_file, vault::config::reference().unwrap().example).unwrap();
    vault::config::VaultConfig::load(Some(&vault_file), []).unwrap_or_else(|e| panic!("{e}"));
    // The example's files, placed here.
    let example = proxy::config::reference()
        .unwrap()
        .example
        .replace("/etc/proxy/", &format!("{}/", dir.path().display()));
    tests::stack::write_secret(&dir.path().join("vault-acme.key"), "vk_example\n").unwrap();
    let proxy_file = dir.path().join("proxy.toml");
    std::fs::write(&proxy_file, example).unwrap();
    proxy::config::ProxyConfig::load(Some(&proxy_file), []).unwrap_or_else(|e| panic!("{e}"));
}
