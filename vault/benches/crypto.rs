//! Micro-benchmarks of the vault's crypto path: sealing and opening a PAN, the fingerprint HMAC,
//! and chaining an audit event. `cargo bench -p vault --bench crypto`.
#![allow(missing_docs, clippy::unwrap_used, reason = "benchmark")]

use criterion::{Criterion, criterion_group, criterion_main};
use shared::Pan;
use vault::audit::{Action, AuditDraft, AuditEvent, Outcome};
use vault::crypto::{Keyring, MasterKey};
use zeroize::Zeroizing;

fn crypto(c: &mut Criterion) {
    let (keys, _) = Keyring::generate(&MasterKey::from_bytes(&Zeroizing::new([7; 32])), 0).unwrap();
    let pan = Pan::parse("4242424242424242").unwrap();
    let sealed = keys
        .seal_pan(&pan, "tok_0000000000000000000000", "acme")
        .unwrap();

    c.bench_function("pan_parse", |b| {
        b.iter(|| Pan::parse(std::hint::black_box("4242 4242 4242 4242")).unwrap())
    });
    c.bench_function("seal_pan", |b| {
        b.iter(|| {
            keys.seal_pan(&pan, "tok_0000000000000000000000", "acme")
                .unwrap()
        })
    });
    c.bench_function("open_pan", |b| {
        b.iter(|| {
            keys.open_pan(&sealed, "tok_0000000000000000000000", "acme")
                .unwrap()
        })
    });
    c.bench_function("fingerprint", |b| {
        b.iter(|| keys.fingerprint().fingerprint("acme", &pan))
    });
    c.bench_function("audit_chain_link", |b| {
        b.iter(|| {
            AuditEvent::chain(
                keys.audit(),
                &[0; 32],
                1,
                0,
                AuditDraft::new("cli_x", Action::TokenDetokenize, Outcome::Granted),
            )
        })
    });
    c.bench_function("scan_4k_of_logs", |b| {
        let text =
            "2026-11-25T01:00:00Z INFO vault::access request_id=req_x route=/v1/tokens status=201 "
                .repeat(50);
        b.iter(|| shared::scan::find_pans(std::hint::black_box(text.as_bytes())))
    });
}

criterion_group!(benches, crypto);
criterion_main!(benches);
