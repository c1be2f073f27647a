//! Micro-benchmarks of Bank 131 request signing and webhook verification (RSA-2048, PKCS#1 v1.5,
//! SHA-256, aws-lc-rs). `cargo bench -p proxy --bench rsa`.
#![allow(missing_docs, clippy::unwrap_used, reason = "benchmark")]

use criterion::{Criterion, criterion_group, criterion_main};
use proxy::bank131::{RequestSigner, SignatureVerifier};

fn rsa(c: &mut Criterion) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bank131/");
    let signer =
        RequestSigner::from_pem(&std::fs::read(format!("{dir}partner-pkcs8.pem")).unwrap())
            .unwrap();
    let verifier =
        SignatureVerifier::from_pem(&std::fs::read(format!("{dir}partner-public.pem")).unwrap())
            .unwrap();
    let body = std::fs::read(format!("{dir}body-start-payout-v2.json")).unwrap();
    let signature = signer.sign(&body).unwrap();

    c.bench_function("rsa2048_sign", |b| {
        b.iter(|| signer.sign(std::hint::black_box(&body)).unwrap())
    });
    c.bench_function("rsa2048_verify", |b| {
        b.iter(|| verifier.verify(std::hint::black_box(&body), &signature))
    });
}

criterion_group!(benches, rsa);
criterion_main!(benches);
