//! `payout-bench`: end-to-end payouts per second through the proxy, the vault and the Bank 131
//! sandbox, and the CPU each of them spends per payout (issue 6).
//!
//! It runs the release binaries `vault`, `proxy` and `bank131-sandbox` (found next to its own
//! executable) as separate processes on a throwaway stack in a temporary directory, set up the
//! way `tests/tests/payouts/stack.rs` sets up its stack, but with zero bank delay and quiet logs.
//! It is the app too: it tokenizes a pool of test cards at the vault, answers the proxy's app
//! webhooks (checking their signatures), and drives a closed loop of `--concurrency` workers,
//! each creating a payout and waiting for its final webhook before the next.
//!
//! After a warm-up it measures a window: completed payouts per second, the create → final webhook
//! latency, and the CPU time (from `/proc/<pid>/stat`) of every process per payout, next to the
//! machine's capacity so the idle share shows. `--profile` records the services with `perf`
//! during the window. Then it checks that nothing was lost or paid twice: every payout the proxy
//! holds is final, and the sandbox wallet went down by exactly the succeeded payouts.
//!
//! A benchmark, not a test: nothing here asserts a speed. Build and run it with
//! `bash bench/payouts.sh [flags]`. No card number is ever printed.
//!
//! This file holds the flags and the run from start to end; the modules hold its parts.
#![forbid(unsafe_code)]

mod cards;
mod cpu;
mod hooks;
mod ledger;
mod load;
mod postgres;
mod profile;
mod report;
mod service;
mod stack;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use clap::Parser;

use crate::hooks::Hooks;
use crate::ledger::Ledger;
use crate::load::Load;
use crate::postgres::Schemas;
use crate::report::Report;
use crate::service::Binaries;
use crate::stack::{Stack, WorkDir};

/// End-to-end payout throughput and CPU split: proxy + vault + Bank 131 sandbox on this machine.
#[derive(Debug, Parser)]
#[command(name = "payout-bench", long_about = None)]
struct Args {
    /// Closed-loop workers: each creates a payout, waits for its final webhook, repeats.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    concurrency: u32,
    /// Length of the measured window, seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    seconds: u64,
    /// Warm-up before the measured window, seconds (load runs, nothing is counted).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=600))]
    warmup: u64,
    /// Distinct test cards tokenized at the vault and paid to in turn.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    cards: u32,
    /// Amount of each payout in minor units (RUB). 1 is a sandbox magic amount.
    #[arg(long, default_value_t = 150_000, value_parser = clap::value_parser!(i64).range(2..=1_000_000_000))]
    amount: i64,
    /// A payout whose final webhook has not come after this many seconds counts as timed out.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    payout_timeout: u64,
    /// Set the proxy's `webhooks.poll_interval_ms` (otherwise its default).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    outbox_poll_ms: Option<u64>,
    /// Extra proxy setting as an environment override, e.g.
    /// `PROXY__PAYOUTS__RECONCILE_INTERVAL_MS=200`; repeatable.
    #[arg(long = "proxy-env", value_name = "PROXY__SECTION__KEY=VALUE")]
    proxy_env: Vec<String>,
    /// Extra vault setting as an environment override, e.g. `VAULT__DATABASE__READ_CONNECTIONS=8`;
    /// repeatable.
    #[arg(long = "vault-env", value_name = "VAULT__SECTION__KEY=VALUE")]
    vault_env: Vec<String>,
    /// Record the three services with `perf record -g` during the measured window and print where
    /// their CPU goes (perf costs CPU itself: throughput under --profile is lower).
    #[arg(long)]
    profile: bool,
    /// Run the vault and the proxy on PostgreSQL (`postgres://…`), each in a fresh schema that is
    /// dropped at the end, instead of SQLite files. Also read from `BENCH_DATABASE_URL`, as the
    /// vault bench scripts do.
    #[arg(long, env = "BENCH_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Keep the temporary directory (configs, logs, databases, perf.data) and print its path. It is
    /// always kept when the run fails.
    #[arg(long)]
    keep: bool,
    /// TLS on every hop of the stack, as a deployment runs it: the vault, the proxy and the
    /// sandbox served over TLS by a test CA made in the run's directory, and mutual TLS from the
    /// proxy to the vault (its detokenize key bound to its certificate). The app's webhook
    /// receiver stays plain HTTP on loopback. Run with and without it to see what transport
    /// security costs.
    #[arg(long)]
    tls: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    shared::server::block_on("payout-bench", async move {
        match run(args).await {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => {
                eprintln!("payout-bench: the run had problems (see the report)");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("payout-bench: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Sets up, runs and reports; `Ok(false)` when the run completed but something went wrong in it.
/// The services are killed when [`bench`] returns or is dropped (Ctrl-C), before the PostgreSQL
/// schemas are dropped.
async fn run(args: Args) -> anyhow::Result<bool> {
    let bins = Binaries::find()?;
    let mut dir = WorkDir::new()?;
    dir.keep = args.keep;
    let schemas = match &args.database_url {
        Some(url) => Some(Schemas::create(url).await?),
        None => None,
    };
    let result = tokio::select! {
        r = bench(&args, &bins, &dir.path, schemas.as_ref()) => r,
        r = tokio::signal::ctrl_c() => match r {
            Ok(()) => Err(anyhow!("interrupted")),
            Err(e) => Err(anyhow!("cannot listen for Ctrl-C: {e}")),
        },
    };
    if let Some(s) = &schemas
        && let Err(e) = s.drop_all().await
    {
        eprintln!(
            "payout-bench: could not drop the schemas {} and {}: {e:#}",
            s.vault, s.proxy
        );
    }
    if !matches!(result, Ok(true)) {
        dir.keep = true;
    }
    if dir.keep {
        eprintln!(
            "payout-bench: kept {} (configs, logs, databases)",
            dir.path.display()
        );
    }
    result
}

/// One run on a fresh stack: set up, warm up, measure the window, drain, check, report.
async fn bench(
    args: &Args,
    bins: &Binaries,
    dir: &Path,
    schemas: Option<&Schemas>,
) -> anyhow::Result<bool> {
    let tls = args.tls.then(|| tests::stack::StackTls::make(dir));
    let http = client(tls.as_ref()).build()?;

    // The app's webhook receiver, up before the proxy client that names it is made.
    let hooks = Arc::new(Hooks::default());
    let receiver = hooks::serve(Arc::clone(&hooks)).await?;
    let mut stack =
        Stack::start(args, bins, dir, schemas, tls.as_ref(), &receiver.url, &http).await?;
    hooks.set_secret(stack.webhook_secret.clone())?;
    let tokens = cards::tokenize(&http, &stack, usize::try_from(args.cards)?).await?;

    let begin = Instant::now();
    let window_start = begin + Duration::from_secs(args.warmup);
    let window_end = window_start + Duration::from_secs(args.seconds);
    let load = Load::new(
        args,
        client(tls.as_ref()),
        &stack,
        tokens,
        Arc::clone(&hooks),
        window_end,
    )?;

    let mut problems: Vec<String> = Vec::new();
    let perf_data = dir.join("perf.data");
    let profiling = args.profile && profile::perf_available();
    if args.profile && !profiling {
        problems.push("--profile: perf is not on PATH; no profile recorded".to_owned());
    }
    let window = tokio::spawn(cpu::measure_window(
        stack.services().map(|s| s.pid().to_string()),
        window_start,
        window_end,
        profiling.then(|| perf_data.clone()),
    ));
    let results = load.run().await?;
    let (first, last, perf_note) = window.await.context("the CPU sampler died")??;
    let drained = begin.elapsed();
    for s in stack.services_mut() {
        if let Err(e) = s.check_alive() {
            problems.push(format!("{e:#}"));
        }
    }
    // Duplicate deliveries come from the outbox a moment after the first; let them land before
    // the counts are read.
    tokio::time::sleep(Duration::from_millis(
        args.outbox_poll_ms
            .unwrap_or(50)
            .saturating_mul(3)
            .clamp(300, 2_000),
    ))
    .await;
    let ledger = Ledger::read(&http, &stack).await?;
    let profile = match (&perf_note, profiling) {
        (None, true) => {
            let pids = stack.services().map(|s| (s.name(), s.pid()));
            Some(profile::report(&perf_data, &pids).await)
        }
        _ => None,
    };
    problems.extend(perf_note);

    let report = Report {
        args,
        bins,
        stack: &stack,
        schemas,
        results: &results,
        hooks: &hooks,
        first: &first,
        last: &last,
        ledger: &ledger,
        drained,
        ticks_per_second: cpu::clock_ticks(),
    };
    Ok(report.print(problems, profile.as_deref()))
}

/// An HTTP client for the stack (30 s timeouts): trusting only the test CA under `--tls`.
fn client(tls: Option<&tests::stack::StackTls>) -> reqwest::ClientBuilder {
    let builder = match tls {
        Some(tls) => tls.http_builder(),
        None => reqwest::Client::builder(),
    };
    builder.timeout(Duration::from_secs(30))
}

/// 10 lowercase letters or digits from the OS random generator (schema names, keys, dirs).
fn random_suffix() -> anyhow::Result<String> {
    let id = shared::ids::random_id("")?;
    Ok(id
        .chars()
        .take(10)
        .map(|c| c.to_ascii_lowercase())
        .collect())
}
