//! Test certificates: a local CA (rcgen) that issues server and client certificates, expired
//! ones and revocation lists, written as the PEM files the services' `[server.tls]` and client
//! settings read.
#![allow(
    clippy::panic,
    reason = "test helpers: a failure here is the test's failure"
)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, RevokedCertParams,
    SerialNumber, date_time_ymd,
};
use sha2::{Digest, Sha256};

/// A certificate and its key, as PEM.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
    /// SHA-256 of the certificate's DER, in hex: what `--cert-sha256` binds a client to.
    pub sha256_hex: String,
    /// The base64 SHA-256 of its public key (SubjectPublicKeyInfo): what Chromium's
    /// `--ignore-certificate-errors-spki-list` takes (it matches the server's own certificate,
    /// not its CA's), so a browser test accepts this certificate and no other.
    pub spki_sha256_base64: String,
    serial: u64,
}

impl Issued {
    /// Writes `<stem>.crt` and `<stem>.key` (mode 0600) into `dir`; returns their paths.
    ///
    /// # Panics
    ///
    /// The files cannot be written.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        write_file(&cert, &self.cert_pem, 0o644);
        write_file(&key, &self.key_pem, 0o600);
        (cert, key)
    }
}

/// A certificate authority for tests.
#[derive(Debug)]
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    next_serial: AtomicU64,
}

impl TestCa {
    /// A new CA whose certificate names `name`.
    ///
    /// # Panics
    ///
    /// Key generation failed.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap_or_default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(SerialNumber::from(1u64));
        let key = ok(KeyPair::generate(), "CA key");
        let cert = ok(params.self_signed(&key), "CA certificate");
        Self {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
            next_serial: AtomicU64::new(2),
        }
    }

    /// The CA certificate.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Writes the CA certificate to `path`.
    ///
    /// # Panics
    ///
    /// The file cannot be written.
    pub fn write_cert(&self, path: &Path) {
        write_file(path, &self.cert_pem, 0o644);
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[&str]) -> Issued {
        self.issue(names, "server", ExtendedKeyUsagePurpose::ServerAuth, false)
    }

    /// A server certificate for `names` that expired in 2000.
    pub fn expired_server(&self, names: &[&str]) -> Issued {
        self.issue(names, "server", ExtendedKeyUsagePurpose::ServerAuth, true)
    }

    /// A client certificate whose subject names `name`.
    pub fn client(&self, name: &str) -> Issued {
        self.issue(&[], name, ExtendedKeyUsagePurpose::ClientAuth, false)
    }

    /// A client certificate that expired in 2000.
    pub fn expired_client(&self, name: &str) -> Issued {
        self.issue(&[], name, ExtendedKeyUsagePurpose::ClientAuth, true)
    }

    /// A revocation list (PEM) naming `revoked`, current until the year 4000.
    ///
    /// # Panics
    ///
    /// Signing failed.
    pub fn crl(&self, revoked: &[&Issued]) -> String {
        self.crl_until(revoked, 4000)
    }

    /// A revocation list (PEM) naming `revoked` whose next update was due in 2020: stale.
    pub fn expired_crl(&self, revoked: &[&Issued]) -> String {
        self.crl_until(revoked, 2020)
    }

    fn crl_until(&self, revoked: &[&Issued], next_update_year: i32) -> String {
        let params = CertificateRevocationListParams {
            this_update: date_time_ymd(2019, 1, 1),
            next_update: date_time_ymd(next_update_year, 1, 1),
            crl_number: SerialNumber::from(self.next_serial.fetch_add(1, Ordering::Relaxed)),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|r| RevokedCertParams {
                    serial_number: SerialNumber::from(r.serial),
                    revocation_time: date_time_ymd(2019, 1, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = ok(params.signed_by(&self.issuer), "CRL");
        ok(crl.pem(), "CRL PEM")
    }

    fn issue(
        &self,
        names: &[&str],
        common_name: &str,
        usage: ExtendedKeyUsagePurpose,
        expired: bool,
    ) -> Issued {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = ok(CertificateParams::new(names), "certificate names");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        params.serial_number = Some(SerialNumber::from(serial));
        if expired {
            params.not_before = date_time_ymd(1999, 1, 1);
            params.not_after = date_time_ymd(2000, 1, 1);
        } else {
            params.not_before = date_time_ymd(2024, 1, 1);
            params.not_after = date_time_ymd(4000, 1, 1);
        }
        let key = ok(KeyPair::generate(), "key");
        let cert = ok(params.signed_by(&key, &self.issuer), "certificate");
        use base64::Engine as _;
        use rcgen::PublicKeyData as _;
        Issued {
            sha256_hex: hex::encode(Sha256::digest(cert.der().as_ref())),
            spki_sha256_base64: base64::engine::general_purpose::STANDARD
                .encode(Sha256::digest(key.subject_public_key_info())),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial,
        }
    }
}

/// PCI case 13 on the TLS listener at `addr` (`host:port`): `openssl s_client` offering only
/// what is forbidden (TLS 1.0, TLS 1.1, CBC suites over TLS 1.2) is refused each time, and the
/// same tool offering an AEAD suite over TLS 1.2, or TLS 1.3, connects (so a refusal is the
/// server's doing, not the tool's). The server's certificate is checked against `ca_file`.
/// Without openssl it says it skipped, unless `REQUIRE_OPENSSL` is set (`.ci/run`).
///
/// # Panics
///
/// A forbidden protocol or suite connected, an allowed one did not, or openssl is missing
/// under `REQUIRE_OPENSSL`.
pub fn assert_only_modern_tls(addr: &str, ca_file: &Path) {
    use std::process::Command;
    if Command::new("openssl").arg("version").output().is_err() {
        assert!(
            std::env::var_os("REQUIRE_OPENSSL").is_none(),
            "REQUIRE_OPENSSL is set but openssl is missing"
        );
        eprintln!("SKIPPED: no openssl; the protocol and cipher refusals were not tried");
        return;
    }
    // SECLEVEL=0 lets this OpenSSL offer the old protocols at all.
    for args in [
        &["-tls1", "-cipher", "DEFAULT@SECLEVEL=0"][..],
        &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"][..],
        &[
            "-tls1_2",
            "-cipher",
            "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384:@SECLEVEL=0",
        ][..],
    ] {
        let (connected, text) = s_client(addr, ca_file, args);
        assert!(!connected, "{addr}: openssl {args:?} connected");
        // The refusal must be the server's: a client that could not even offer what it was
        // told to proves nothing.
        for own in [
            "no protocols available",
            "no cipher match",
            "no ciphers available",
        ] {
            assert!(
                !text.contains(own),
                "{addr}: this openssl cannot offer {args:?} ({own}), so the refusal was not tried"
            );
        }
    }
    for args in [
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"][..],
        &["-tls1_3"][..],
    ] {
        let (connected, text) = s_client(addr, ca_file, args);
        assert!(connected, "{addr}: openssl {args:?} must connect:\n{text}");
    }
}

/// One `openssl s_client` handshake to `addr`, the server's certificate checked against
/// `ca_file` (a failed check fails the handshake); whether it finished, and what openssl said.
/// A handshake that hangs is killed after a minute.
fn s_client(addr: &str, ca_file: &Path, args: &[&str]) -> (bool, String) {
    use std::process::{Command, Stdio};
    let child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            addr,
            "-verify_return_error",
            "-CAfile",
        ])
        .arg(ca_file)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(e) => panic!("running openssl s_client: {e}"),
    };
    let pid = child.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("openssl s_client: {e}"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid]).status();
            panic!("{addr}: openssl s_client {args:?} hung for a minute");
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    // A finished handshake prints the negotiated cipher; a refused one prints "(NONE)".
    let connected = stdout.contains("Cipher is ") && !stdout.contains("Cipher is (NONE)");
    (
        connected,
        format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)),
    )
}

fn ok<T>(result: Result<T, rcgen::Error>, what: &str) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("test CA: {what}: {e}"),
    }
}

fn write_file(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    if let Err(e) = std::fs::write(path, text)
        .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)))
    {
        panic!("test CA: writing {}: {e}", path.display());
    }
}
