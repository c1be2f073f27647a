//! Throughput of the boundary scanner (`vault scan`): MiB/s over log-like text, over a
//! base64-heavy export and over binary bytes (a database file), each with no card number in it,
//! so every byte is examined and nothing cut short. `cargo bench -p shared --bench scan`.
#![allow(missing_docs, clippy::unwrap_used, reason = "benchmark")]

use base64::Engine as _;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shared::scan::stream::StreamScanner;

const SIZE: usize = 8 << 20;

fn repeat_to(unit: &[u8]) -> Vec<u8> {
    unit.iter().copied().cycle().take(SIZE).collect()
}

fn inputs() -> Vec<(&'static str, Vec<u8>)> {
    let log = repeat_to(
        b"2026-12-04T18:14:28.123456Z INFO payout pay_7QveIRNsUE0B4yzZOMB0Vn succeeded amount=150000 order=ORD-20261201-000123\n",
    );
    let body = base64::engine::general_purpose::STANDARD.encode(
        br#"{"event":"payout.succeeded","payout":{"id":"pay_7QveIRNsUE0B4yzZOMB0Vn","amount":150000,"card":{"last4":"4242"}}}"#,
    );
    let export = repeat_to(format!("{{\"id\":1,\"body\":\"{body}\"}}\n").as_bytes());
    // Pseudo-random bytes (xorshift), as a page of a database file looks to the scanner.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let binary: Vec<u8> = (0..SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect();
    vec![("log", log), ("base64_export", export), ("binary", binary)]
}

fn scan(c: &mut Criterion) {
    let scanner = StreamScanner::default();
    let mut group = c.benchmark_group("scan");
    group.throughput(Throughput::Bytes(SIZE as u64));
    group.sample_size(10);
    for (name, data) in inputs() {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut found = 0;
                scanner.scan(data.as_slice(), |_| found += 1).unwrap();
                assert_eq!(found, 0, "{name} holds a card number");
            });
        });
    }
    group.finish();
}

criterion_group!(benches, scan);
criterion_main!(benches);
