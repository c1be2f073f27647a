//! PCI case 13 for the outbound bank client: against the sandbox served over TLS, the client
//! trusting `bank131.ca_file` refuses an expired certificate, one from another CA, one for
//! another host, and (with only the system's roots) the private CA's own; each before a byte of
//! the request, card number included, reaches the bank (the sandbox's journal stays empty). The
//! control, a current certificate for 127.0.0.1 from the configured CA, pays.

use proxy::bank131::{ApiVersion, CreateSession};
use shared::Pan;
use testkit::tls::{Issued, TestCa};
use tests::sandbox::{self, ProjectConfig, SandboxConfig, SandboxHandle};

use crate::env::{PROJECT, client_config, partner_client, payout};

async fn bank_serving(dir: &std::path::Path, cert: &Issued) -> SandboxHandle {
    let stem = format!("bank-{}", &cert.sha256_hex[..8]);
    let (cert_file, key_file) = cert.write(dir, &stem);
    let project = ProjectConfig::new(PROJECT, crate::env::partner_public_pem().to_owned());
    sandbox::spawn(SandboxConfig {
        projects: vec![project],
        tls: shared::config::TlsConfig {
            cert_file: Some(cert_file),
            key_file: Some(key_file),
            client_ca_file: None,
            client_crl_file: None,
        },
        ..SandboxConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn pci_13_the_bank_client_refuses_expired_foreign_and_misnamed_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("bank CA");
    let ca_file = dir.path().join("ca.crt");
    ca.write_cert(&ca_file);
    let card = Pan::parse("4111111111111111").unwrap();
    let client_for = |bank: &SandboxHandle, ca_file: Option<std::path::PathBuf>| {
        let mut config = client_config(bank.base_url(), ApiVersion::V2, 5_000);
        config.ca_file = ca_file;
        partner_client(&config)
    };

    // The control: the configured CA's current certificate for 127.0.0.1 works.
    let good = bank_serving(dir.path(), &ca.server(&["127.0.0.1"])).await;
    assert!(
        good.base_url().starts_with("https://"),
        "{}",
        good.base_url()
    );
    let client = client_for(&good, Some(ca_file.clone()));
    let session = client
        .create_session(&CreateSession::default(), None)
        .await
        .unwrap();
    client
        .start_payout(&session.id, &payout(&card, 10_000, "Ivan Petrov"), None)
        .await
        .unwrap();
    assert!(!good.journal().is_empty(), "the control reached the bank");
    // The same bank with only the system's roots trusted: a private CA is nobody's.
    good.clear_journal();
    let system = client_for(&good, None);
    assert!(
        system
            .start_payout(&session.id, &payout(&card, 10_000, "Ivan Petrov"), None)
            .await
            .is_err(),
        "a private CA's certificate was trusted by default"
    );
    assert!(good.journal().is_empty(), "the request reached the bank");

    for (what, cert) in [
        ("an expired", ca.expired_server(&["127.0.0.1"])),
        (
            "another CA's",
            TestCa::new("rogue CA").server(&["127.0.0.1"]),
        ),
        ("another host's", ca.server(&["bank.other.example"])),
    ] {
        let bank = bank_serving(dir.path(), &cert).await;
        let client = client_for(&bank, Some(ca_file.clone()));
        let started = client
            .start_payout("ps_1", &payout(&card, 10_000, "Ivan Petrov"), None)
            .await;
        assert!(started.is_err(), "{what} certificate was accepted");
        assert!(
            client
                .create_session(&CreateSession::default(), None)
                .await
                .is_err(),
            "{what} certificate was accepted"
        );
        assert!(
            bank.journal().is_empty(),
            "{what} certificate: a request reached the bank"
        );
    }
}
