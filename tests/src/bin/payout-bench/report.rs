//! The Markdown report: the measured window (throughput, latency), the CPU per process and per
//! thread group next to the machine's capacity, the whole run's counts, and the problems found.
#![allow(
    clippy::print_stdout,
    reason = "the Markdown report is the program's output"
)]

use std::time::{Duration, SystemTime};

use crate::Args;
use crate::cpu::{CpuSample, PROCESS_NAMES, thread_groups};
use crate::hooks::{HookCounts, Hooks};
use crate::ledger::Ledger;
use crate::load::{Outcome, Record, WorkerResult};
use crate::postgres::Schemas;
use crate::service::Binaries;
use crate::stack::Stack;

/// The outcomes that come with a final webhook.
const FINALS: [Outcome; 3] = [Outcome::Succeeded, Outcome::Failed, Outcome::Cancelled];

/// Everything the report is made from.
#[derive(Debug)]
pub(crate) struct Report<'a> {
    pub(crate) args: &'a Args,
    pub(crate) bins: &'a Binaries,
    pub(crate) stack: &'a Stack,
    pub(crate) schemas: Option<&'a Schemas>,
    pub(crate) results: &'a [WorkerResult],
    pub(crate) hooks: &'a Hooks,
    pub(crate) first: &'a CpuSample,
    pub(crate) last: &'a CpuSample,
    pub(crate) ledger: &'a Ledger,
    /// Warm-up, window and drain.
    pub(crate) drained: Duration,
    pub(crate) ticks_per_second: u64,
}

/// How many of `records` ended as `outcome`.
fn count(records: &[Record], outcome: Outcome) -> usize {
    records.iter().filter(|r| r.outcome == outcome).count()
}

/// The `per_mille`th percentile (nearest rank) of sorted `v`.
fn percentile(v: &[Duration], per_mille: usize) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let rank = (v.len() * per_mille).div_ceil(1000).max(1);
    v.get(rank - 1).copied().unwrap_or(Duration::ZERO)
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

impl Report<'_> {
    /// Prints the Markdown report after nothing or after `problems` found earlier; returns
    /// whether the run was clean.
    pub(crate) fn print(&self, mut problems: Vec<String>, profile: Option<&str>) -> bool {
        let window = self
            .last
            .at
            .saturating_duration_since(self.first.at)
            .as_secs_f64();
        let records: Vec<Record> = self
            .results
            .iter()
            .flat_map(|r| r.records.iter().copied())
            .collect();
        let completed = self.print_window(&records, window);
        self.print_cpu(window, completed);
        self.print_threads(window);
        let hooks = self.hooks.counts();
        self.print_run(&records, &hooks);
        self.find_problems(&records, &hooks, &mut problems);
        if problems.is_empty() {
            println!("No problems: every payout created was paid exactly once and reported.");
        } else {
            println!("### Problems");
            println!();
            for p in &problems {
                println!("- {p}");
            }
        }
        if let Some(profile) = profile {
            println!("{profile}");
        }
        problems.is_empty()
    }

    /// The heading, the setup, and throughput and latency in the window; returns the payouts
    /// completed in it.
    fn print_window(&self, records: &[Record], window: f64) -> usize {
        let args = self.args;
        let (w0, w1) = (self.first.at, self.last.at);
        let in_window: Vec<Record> = records
            .iter()
            .filter(|r| FINALS.contains(&r.outcome) && r.end >= w0 && r.end < w1)
            .copied()
            .collect();
        let completed = in_window.len();
        let mut latencies: Vec<Duration> = in_window
            .iter()
            .map(|r| r.end.saturating_duration_since(r.sent))
            .collect();
        latencies.sort_unstable();
        let per_second = completed as f64 / window.max(f64::EPSILON);
        let db = match self.schemas {
            Some(s) => format!("PostgreSQL (schemas {}, {})", s.vault, s.proxy),
            None => "SQLite (WAL files in the temporary directory)".to_owned(),
        };
        let date = humantime::format_rfc3339_seconds(SystemTime::now());

        println!(
            "## payout-bench: concurrency {}, {} s measured after {} s warm-up, {db}",
            args.concurrency, args.seconds, args.warmup
        );
        println!();
        println!(
            "{date}, {} cores, everything on this machine; binaries from {}; sandbox ready/finish \
             delay 0 ms; proxy: {}; vault: {}; {} cards, {} minor units RUB per payout, \
             confirm auto{}",
            cores(),
            self.bins.dir.display(),
            self.stack.proxy_settings,
            self.stack.vault_settings,
            args.cards,
            args.amount,
            if args.profile {
                "; **perf recording during the window** (it costs CPU)"
            } else {
                ""
            },
        );
        println!();
        println!("| measured window | value |");
        println!("|---|---:|");
        println!("| completed payouts/s | **{per_second:.1}** |");
        println!(
            "| completed (final webhook in window) | {completed} in {window:.2} s: {} succeeded, {} failed, {} cancelled |",
            count(&in_window, Outcome::Succeeded),
            count(&in_window, Outcome::Failed),
            count(&in_window, Outcome::Cancelled),
        );
        println!(
            "| create → final webhook p50 / p90 / p99 / max | {} / {} / {} / {} ms |",
            ms(percentile(&latencies, 500)),
            ms(percentile(&latencies, 900)),
            ms(percentile(&latencies, 990)),
            ms(latencies.last().copied().unwrap_or_default()),
        );
        println!();
        completed
    }

    /// CPU seconds of the ticks between the two samples.
    fn secs(&self, first: u64, last: u64) -> f64 {
        last.saturating_sub(first) as f64 / self.ticks_per_second.max(1) as f64
    }

    /// CPU per process and of the machine in the window, per completed payout.
    fn print_cpu(&self, window: f64, completed: usize) {
        let (first, last) = (self.first, self.last);
        let per_payout = |s: f64| {
            if completed == 0 {
                "-".to_owned()
            } else {
                format!("{:.2}", s * 1000.0 / completed as f64)
            }
        };
        let row = |label: &str, s: f64| {
            println!(
                "| {label} | {s:.2} | {:.0} | {} |",
                s / window * 100.0,
                per_payout(s)
            );
        };
        let cpu: Vec<f64> = (0..4)
            .map(|i| self.secs(first.procs[i], last.procs[i]))
            .collect();
        let ours: f64 = cpu.iter().sum();
        let busy = self.secs(first.machine_busy, last.machine_busy);
        let steal = self.secs(first.machine_steal, last.machine_steal);
        let cores = cores();
        let capacity = cores as f64 * window;
        let idle = (capacity - busy - steal).max(0.0);
        let other = (busy - ours).max(0.0);
        println!(
            "| CPU in the window ({} ticks/s) | CPU s | % of one core | ms CPU per completed payout |",
            self.ticks_per_second
        );
        println!("|---|---:|---:|---:|");
        for (name, s) in PROCESS_NAMES.iter().zip(&cpu) {
            row(name, *s);
        }
        row("**sum of the four**", ours);
        row(
            &format!(
                "other processes + kernel threads (machine busy − sum{})",
                if self.schemas.is_some() {
                    "; PostgreSQL is here"
                } else {
                    ""
                }
            ),
            other,
        );
        row("machine busy (/proc/stat)", busy);
        row("stolen by the hypervisor (steal)", steal);
        row("machine idle", idle);
        println!(
            "| machine capacity ({cores} cores × {window:.2} s) | {capacity:.2} | {} | {} |",
            cores * 100,
            per_payout(capacity)
        );
        println!();
    }

    /// Threads by name per process: a serial stage shows as one thread near 100% of a core.
    fn print_threads(&self, window: f64) {
        let tps = self.ticks_per_second.max(1) as f64;
        println!(
            "| threads in the window (groups above 1% of a core) | threads | CPU s | busiest thread, % of a core |"
        );
        println!("|---|---:|---:|---:|");
        for (i, process) in PROCESS_NAMES.iter().enumerate() {
            for (name, n, total, max) in
                thread_groups(&self.first.threads[i], &self.last.threads[i])
            {
                let secs = total as f64 / tps;
                if secs / window < 0.01 {
                    continue;
                }
                println!(
                    "| {process}: `{name}` | {n} | {secs:.2} | {:.0} |",
                    max as f64 / tps / window * 100.0
                );
            }
        }
        println!();
    }

    /// Payouts created by the bench.
    fn created(&self) -> usize {
        self.results.iter().map(|r| r.created.len()).sum()
    }

    /// What the sandbox wallet should have paid: the proxy's succeeded payouts × the amount.
    fn expected_spend(&self) -> i64 {
        i64::try_from(self.ledger.count("succeeded"))
            .unwrap_or(i64::MAX)
            .saturating_mul(self.args.amount)
    }

    /// The whole run's counts: payouts, webhooks, and what the proxy and the sandbox hold.
    fn print_run(&self, records: &[Record], hooks: &HookCounts) {
        println!(
            "| whole run (warm-up, window, drain: {:.1} s) | value |",
            self.drained.as_secs_f64()
        );
        println!("|---|---:|");
        println!("| payouts created (201) | {} |", self.created());
        println!(
            "| ended succeeded / failed / cancelled / timed out | {} / {} / {} / {} |",
            count(records, Outcome::Succeeded),
            count(records, Outcome::Failed),
            count(records, Outcome::Cancelled),
            count(records, Outcome::TimedOut),
        );
        println!(
            "| create errors (non-201) | {} |",
            count(records, Outcome::CreateError)
        );
        println!(
            "| final webhooks received: succeeded / failed / cancelled | {} / {} / {} |",
            hooks.received(Outcome::Succeeded),
            hooks.received(Outcome::Failed),
            hooks.received(Outcome::Cancelled)
        );
        println!(
            "| duplicate final webhooks (at-least-once) / late (after timeout) | {} / {} |",
            hooks.duplicates, hooks.late
        );
        println!(
            "| final webhooks for payouts the bench did not create | {} |",
            hooks.unknown
        );
        println!(
            "| invalid signatures / unreadable / non-final events | {} / {} / {} |",
            hooks.invalid_signatures, hooks.unreadable, hooks.non_final
        );
        let statuses: Vec<String> = self
            .ledger
            .by_status
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!(
            "| payouts in the proxy | {} ({}) |",
            self.ledger.total,
            statuses.join(", ")
        );
        println!(
            "| sandbox wallet spent / succeeded × amount | {} / {} |",
            self.ledger.spent,
            self.expected_spend()
        );
        println!();
    }

    /// Adds what went wrong in the run to `problems`.
    fn find_problems(&self, records: &[Record], hooks: &HookCounts, problems: &mut Vec<String>) {
        for r in self.results {
            problems.extend(r.errors.iter().map(|e| format!("create failed: {e}")));
        }
        let create_errors = count(records, Outcome::CreateError);
        if create_errors > 0 {
            problems.push(format!("{create_errors} creates did not answer 201"));
        }
        let timed_out = count(records, Outcome::TimedOut);
        if timed_out > 0 {
            problems.push(format!(
                "{timed_out} payouts had no final webhook within {} s",
                self.args.payout_timeout
            ));
        }
        let failed = count(records, Outcome::Failed) + count(records, Outcome::Cancelled);
        if failed > 0 {
            problems.push(format!(
                "{failed} payouts failed or were cancelled (ordinary test cards should succeed)"
            ));
        }
        if hooks.invalid_signatures > 0 || hooks.unreadable > 0 {
            problems.push(format!(
                "{} webhooks with an invalid signature, {} unreadable",
                hooks.invalid_signatures, hooks.unreadable
            ));
        }
        if hooks.unknown > 0 {
            problems.push(format!(
                "{} final webhooks for payouts the bench did not create",
                hooks.unknown
            ));
        }
        let created = self.created();
        if u64::try_from(created).ok() != Some(self.ledger.total) {
            problems.push(format!(
                "the bench created {created} payouts but the proxy holds {}",
                self.ledger.total
            ));
        }
        let unfinished: u64 = self
            .ledger
            .by_status
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "succeeded" | "failed" | "cancelled"))
            .map(|(_, v)| v)
            .sum();
        if unfinished > 0 {
            problems.push(format!("{unfinished} payouts in the proxy are not final"));
        }
        let expected_spend = self.expected_spend();
        if self.ledger.spent != expected_spend {
            problems.push(format!(
                "the sandbox wallet went down by {} but the proxy's succeeded payouts add up to {expected_spend}: \
                 a payout was lost or paid twice",
                self.ledger.spent
            ));
        }
    }
}
