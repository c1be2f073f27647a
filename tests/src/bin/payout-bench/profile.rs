//! `--profile`: `perf record -g` of the three services over the measured window, and the
//! `perf report` sections of the report (by thread name, and per service by symbol and kind).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::process::Child;

/// Whether `perf` is on PATH and runs.
pub(crate) fn perf_available() -> bool {
    Command::new("perf")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A `perf record` of the services for the rest of the window, or why it did not start.
#[derive(Debug)]
pub(crate) struct Recording(Result<Child, String>);

impl Recording {
    /// Records `pids` for `seconds` into `data`, with perf's messages in `<data>.record.log`.
    pub(crate) fn start(data: &Path, pids: &[String], seconds: f64) -> anyhow::Result<Self> {
        let log = std::fs::File::create(data.with_extension("record.log"))?;
        let spawned = tokio::process::Command::new("perf")
            .args(["record", "-F", "999", "-g", "-p", &pids.join(","), "-o"])
            .arg(data)
            .args(["--", "sleep", &format!("{seconds:.3}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn();
        Ok(Self(
            spawned.map_err(|e| format!("perf record did not start: {e}")),
        ))
    }

    /// Waits for perf to write `perf.data`; what went wrong, if anything did.
    pub(crate) async fn finish(self) -> Option<String> {
        let mut child = match self.0 {
            Ok(c) => c,
            Err(note) => return Some(note),
        };
        // perf stops by itself when its `sleep` ends, then writes perf.data.
        match tokio::time::timeout(Duration::from_secs(120), child.wait()).await {
            Ok(Ok(s)) if s.success() => None,
            Ok(Ok(s)) => Some(format!("perf record exited with {s}")),
            Ok(Err(e)) => Some(format!("perf record: {e}")),
            Err(_) => Some("perf record did not finish".to_owned()),
        }
    }
}

/// Runs `perf report --stdio --no-children -g none -i <data> <extra>`: its output, or why not.
async fn perf_report(data: &Path, extra: &[&str]) -> String {
    let o = tokio::process::Command::new("perf")
        .args(["report", "--stdio", "--no-children", "-g", "none"])
        .arg("-i")
        .arg(data)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .await;
    match o {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => format!(
            "perf report failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => format!("perf report did not run: {e}"),
    }
}

/// The first `n` rows of a `perf report`, without comments and blank lines, each cut at 170
/// characters.
fn rows(text: &str, n: usize) -> String {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .take(n)
        .map(|l| {
            let l: String = l.chars().take(170).collect();
            format!("{l}\n")
        })
        .collect()
}

/// The perf sections of the report (Markdown), from `data` recorded of the `(name, pid)`s.
pub(crate) async fn report(data: &Path, pids: &[(&str, u32)]) -> String {
    let mut out = String::new();
    let all = perf_report(data, &["--sort", "comm,dso"]).await;
    let _ = write!(
        out,
        "\n### perf: all three services by thread name and DSO (% of all samples)\n\n\
         `comm` is the thread name: tokio's workers are `tokio-rt-worker` in every process, so \
         that row mixes the services; the per-process sections below filter by pid.\n\n\
         ```text\n{}```\n",
        rows(&all, 25)
    );
    for (name, pid) in pids {
        let pid = pid.to_string();
        let by_sym = perf_report(
            data,
            &["--pid", &pid, "--percentage", "relative", "--sort", "sym"],
        )
        .await;
        let shares: Vec<String> = categories(&by_sym)
            .into_iter()
            .map(|(label, pct)| format!("{label} {pct:.1}%"))
            .collect();
        let _ = write!(
            out,
            "\n### perf: {name} (% of its own samples)\n\nBy kind (symbol names, approximate): {}.\n\n\
             ```text\n{}```\n",
            shares.join(", "),
            rows(&by_sym, 25)
        );
    }
    out
}

/// Symbol shares of a `perf report --sort sym` by kind, largest first. Kernel symbols are marked
/// `[k]`; the rest is told apart by name only (SQLite's static functions have no common prefix),
/// so this is a rough split.
fn categories(report: &str) -> Vec<(&'static str, f64)> {
    // (label, name fragments, C functions only: SQLite's names would otherwise also catch Rust
    // paths such as `alloc::collections::btree`).
    const KINDS: &[(&str, &[&str], bool)] = &[
        (
            "RSA/bignum (aws-lc)",
            &["aws_lc", "rsaz", "bn_", "rsa_"],
            false,
        ),
        (
            "SQLite",
            &[
                "sqlite3", "pcache", "pager", "btree", "vdbe", "walindex", "walframe",
            ],
            true,
        ),
        (
            "malloc/free",
            &[
                "malloc",
                "free",
                "_mi_",
                "mi_",
                "_int_",
                "unlink_chunk",
                "realloc",
                "calloc",
            ],
            false,
        ),
        (
            "memcpy/memset",
            &["__mem", "memcpy", "memmove", "memset", "memcmp"],
            false,
        ),
        ("serde_json", &["serde_json"], false),
        (
            "HTTP (hyper/reqwest/axum)",
            &["hyper", "reqwest", "axum", "h2::", "http::"],
            false,
        ),
        ("SHA-256/HMAC", &["sha256", "sha2", "hmac"], false),
        ("tokio", &["tokio"], false),
    ];
    let mut shares: BTreeMap<&'static str, f64> = BTreeMap::new();
    for line in report.lines().filter(|l| !l.starts_with('#')) {
        let mut parts = line.split_whitespace();
        let (Some(pct), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(pct) = pct.trim_end_matches('%').parse::<f64>() else {
            continue;
        };
        let symbol = parts.collect::<Vec<_>>().join(" ").to_ascii_lowercase();
        let label = if kind == "[k]" {
            "kernel"
        } else {
            KINDS
                .iter()
                .find(|(_, needles, c_only)| {
                    !(*c_only && symbol.contains("::"))
                        && needles.iter().any(|n| symbol.contains(n))
                })
                .map_or("other user space", |(label, _, _)| label)
        };
        *shares.entry(label).or_default() += pct;
    }
    let mut out: Vec<(&'static str, f64)> = shares.into_iter().collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}
