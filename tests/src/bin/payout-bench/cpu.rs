//! CPU accounting from `/proc`: the ticks of every process and of each of its threads, and the
//! machine's busy and stolen ticks, sampled at the start and the end of the measured window.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::Context;

use crate::profile::Recording;

/// The processes of a [`CpuSample`], in its order.
pub(crate) const PROCESS_NAMES: [&str; 4] = [
    "vault",
    "proxy",
    "bank131-sandbox",
    "payout-bench (load + app)",
];

/// Per thread id: (thread name, utime + stime ticks).
type Threads = HashMap<u64, (String, u64)>;

/// One reading of every process's CPU ticks.
#[derive(Debug)]
pub(crate) struct CpuSample {
    pub(crate) at: Instant,
    /// As in [`PROCESS_NAMES`]: vault, proxy, sandbox, this process.
    pub(crate) procs: [u64; 4],
    /// Per process as in `procs`: its threads.
    pub(crate) threads: [Threads; 4],
    pub(crate) machine_busy: u64,
    pub(crate) machine_steal: u64,
}

/// CPU ticks (utime + stime) of a process, from `/proc/<pid>/stat`.
fn process_ticks(pid: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    stat_ticks(&text)
}

/// utime + stime of one `stat` line (of a process or a thread).
fn stat_ticks(text: &str) -> anyhow::Result<u64> {
    // The command name (field 2) is in parentheses and may itself hold spaces or ')': the fields
    // after the last ')' start at field 3 (state), so utime (14) and stime (15) are the 12th and
    // 13th of them.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| -> anyhow::Result<u64> {
        Ok(fields
            .get(i)
            .context("short /proc/<pid>/stat")?
            .parse::<u64>()?)
    };
    Ok(get(11)? + get(12)?)
}

/// The threads of process `pid`, from `/proc/<pid>/task/<tid>/stat`. Threads that end between
/// two readings drop out; that is fine for finding the busiest ones.
fn thread_ticks(pid: &str) -> Threads {
    let mut out = HashMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u64>().ok())
        else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let name = text
            .split_once('(')
            .and_then(|(_, r)| r.rsplit_once(')'))
            .map_or("?", |(n, _)| n)
            .to_owned();
        if let Ok(ticks) = stat_ticks(&text) {
            out.insert(tid, (name, ticks));
        }
    }
    out
}

/// Machine-wide (busy, steal) ticks from the `cpu` line of `/proc/stat`. Steal (time the
/// hypervisor gave this VM's CPUs to someone else) is kept apart: it is neither our work nor idle.
fn machine_ticks() -> anyhow::Result<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("no cpu line in /proc/stat")?;
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    let busy = at(0) + at(1) + at(2) + at(5) + at(6);
    Ok((busy, at(7)))
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux when getconf is missing).
pub(crate) fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// Reads the services' (`pids`: vault, proxy, sandbox) and this process's ticks.
fn sample(pids: &[String; 3]) -> anyhow::Result<CpuSample> {
    let at = Instant::now();
    let who = [pids[0].as_str(), &pids[1], &pids[2], "self"];
    let mut procs = [0; 4];
    for (ticks, pid) in procs.iter_mut().zip(who) {
        *ticks = process_ticks(pid)?;
    }
    let threads = who.map(thread_ticks);
    let (machine_busy, machine_steal) = machine_ticks()?;
    Ok(CpuSample {
        at,
        procs,
        threads,
        machine_busy,
        machine_steal,
    })
}

/// Samples CPU at the window's start and end; records the services with perf in between when
/// given where to put `perf.data`. Returns both samples and what went wrong with perf, if it did.
pub(crate) async fn measure_window(
    pids: [String; 3],
    start: Instant,
    end: Instant,
    perf: Option<PathBuf>,
) -> anyhow::Result<(CpuSample, CpuSample, Option<String>)> {
    tokio::time::sleep_until(start.into()).await;
    let first = sample(&pids)?;
    let recording = match &perf {
        Some(data) => {
            let seconds = end.saturating_duration_since(Instant::now()).as_secs_f64();
            Some(Recording::start(data, &pids, seconds)?)
        }
        None => None,
    };
    tokio::time::sleep_until(end.into()).await;
    let last = sample(&pids)?;
    let perf_note = match recording {
        Some(r) => r.finish().await,
        None => None,
    };
    Ok((first, last, perf_note))
}

/// CPU of one process's threads between two readings, grouped by thread name: (name, threads,
/// ticks, ticks of the busiest one), busiest group first.
pub(crate) fn thread_groups(first: &Threads, last: &Threads) -> Vec<(String, usize, u64, u64)> {
    let mut groups: BTreeMap<&str, (usize, u64, u64)> = BTreeMap::new();
    for (tid, (name, ticks)) in last {
        let before = first.get(tid).map_or(0, |(_, t)| *t);
        let used = ticks.saturating_sub(before);
        let g = groups.entry(name.as_str()).or_default();
        g.0 += 1;
        g.1 += used;
        g.2 = g.2.max(used);
    }
    let mut out: Vec<(String, usize, u64, u64)> = groups
        .into_iter()
        .map(|(name, (n, total, max))| (name.to_owned(), n, total, max))
        .collect();
    out.sort_by_key(|g| std::cmp::Reverse(g.2));
    out
}
