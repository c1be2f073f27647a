//! `vault scan` and `proxy scan`: the boundary scanner over files and directories, for anyone
//! to run on any host (it needs no configuration): logs, database files and dumps, captures,
//! exported queues. Directories are walked; symbolic links are never followed (not even when
//! named), so a scan stays on the paths it was given; `-` reads standard input
//! (`pg_dump app | vault scan -`). Every file is read as a stream ([`StreamScanner`]), so a
//! multi-gigabyte dump takes no more memory than a small one.
//!
//! Only masked values are printed (BIN and last four), with the file and byte offset; a path
//! that itself holds a card number is printed masked too. Exit status: 0 when everything was
//! read and nothing found, 1 when a card number was found, 2 when something could not be read
//! (so a clean result is never claimed for files the scanner did not see).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;

use super::stream::StreamScanner;
use super::{encoded::EncodedFinding, mask_pans};

/// One card number found in a file.
#[derive(Clone, Debug, Serialize)]
pub struct PathFinding {
    /// The file (masked where it holds a card number); `-` for standard input.
    pub path: String,
    /// Byte offset of the first byte of the finding.
    pub offset: u64,
    /// Bytes it spans (separators and encoding included).
    pub length: u64,
    /// BIN and last four.
    pub masked: String,
    /// `plain`, `hex`, `base64`, `base64 of hex`….
    pub encoding: String,
}

/// A path the scan did not read, and why.
#[derive(Clone, Debug, Serialize)]
pub struct NotRead {
    /// The path (masked where it holds a card number).
    pub path: String,
    /// Why.
    pub reason: String,
}

/// What a scan saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Files (and standard input) read to the end.
    pub files: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Card numbers found.
    pub card_numbers: u64,
    /// Files with at least one.
    pub files_with_card_numbers: u64,
    /// Symbolic links and special files, passed over on purpose.
    pub skipped: Vec<NotRead>,
    /// Files and directories that could not be read: the scan is incomplete.
    pub unreadable: Vec<NotRead>,
}

impl Summary {
    /// 0 clean, 1 found, 2 incomplete.
    pub fn exit_code(&self) -> u8 {
        if self.card_numbers > 0 {
            1
        } else if !self.unreadable.is_empty() {
            2
        } else {
            0
        }
    }
}

/// Scans `paths`, calling `found` with each finding as it is made (so that a file full of card
/// numbers is reported as it is read, not held).
pub fn scan_paths(
    paths: &[PathBuf],
    scanner: StreamScanner,
    mut found: impl FnMut(&PathFinding),
) -> Summary {
    let mut summary = Summary::default();
    for path in paths {
        if path.as_os_str() == "-" {
            scan_file(
                "-".to_owned(),
                io::stdin().lock(),
                scanner,
                &mut summary,
                &mut found,
            );
        } else {
            walk(path, scanner, &mut summary, &mut found);
        }
    }
    summary
}

fn shown(path: &Path) -> String {
    mask_pans(&path.to_string_lossy())
}

fn walk(
    path: &Path,
    scanner: StreamScanner,
    summary: &mut Summary,
    found: &mut impl FnMut(&PathFinding),
) {
    let not_read = |reason: String| NotRead {
        path: shown(path),
        reason,
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) => return summary.unreadable.push(not_read(e.to_string())),
    };
    let kind = meta.file_type();
    if kind.is_symlink() {
        summary
            .skipped
            .push(not_read("a symbolic link (never followed)".to_owned()));
    } else if kind.is_dir() {
        let entries = match std::fs::read_dir(path) {
            Ok(entries) => entries,
            Err(e) => return summary.unreadable.push(not_read(e.to_string())),
        };
        // In name order, so that two scans of the same tree print the same report.
        let mut children = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) => children.push(entry.path()),
                Err(e) => summary.unreadable.push(not_read(e.to_string())),
            }
        }
        children.sort();
        for child in children {
            walk(&child, scanner, summary, found);
        }
    } else if kind.is_file() {
        match std::fs::File::open(path) {
            Ok(file) => scan_file(shown(path), file, scanner, summary, found),
            Err(e) => summary.unreadable.push(not_read(e.to_string())),
        }
    } else {
        summary.skipped.push(not_read(
            "not a regular file (a device, socket or pipe)".to_owned(),
        ));
    }
}

fn scan_file(
    name: String,
    reader: impl io::Read,
    scanner: StreamScanner,
    summary: &mut Summary,
    found: &mut impl FnMut(&PathFinding),
) {
    let mut here = 0;
    let result = scanner.scan(reader, |f: EncodedFinding| {
        here += 1;
        found(&PathFinding {
            path: name.clone(),
            offset: f.range.start as u64,
            length: (f.range.end - f.range.start) as u64,
            masked: f.masked,
            encoding: f.encoding.to_string(),
        });
    });
    summary.card_numbers += here;
    if here > 0 {
        summary.files_with_card_numbers += 1;
    }
    match result {
        Ok(stats) => {
            summary.files += 1;
            summary.bytes += stats.bytes;
        }
        Err(e) => summary.unreadable.push(NotRead {
            path: name,
            reason: format!("read failed part-way: {e}"),
        }),
    }
}

/// The command: scans `paths` and writes the report to `out` (a line per finding, or with
/// `json` one JSON document) and a summary line to `err`; the exit status of [`Summary`].
pub fn run(program: &str, paths: &[PathBuf], json: bool) -> ExitCode {
    let mut out = io::stdout().lock();
    let mut err = io::stderr().lock();
    ExitCode::from(report(
        program,
        paths,
        json,
        StreamScanner::default(),
        &mut out,
        &mut err,
    ))
}

/// [`run`] with its streams and scanner given (for tests).
pub fn report(
    program: &str,
    paths: &[PathBuf],
    json: bool,
    scanner: StreamScanner,
    out: &mut impl Write,
    err: &mut impl Write,
) -> u8 {
    // A closed output (`| head`) ends the report, not the process with a panic.
    let mut broken = false;
    let mut put = |out: &mut dyn Write, text: &str| {
        if !broken && out.write_all(text.as_bytes()).is_err() {
            broken = true;
        }
    };
    if json {
        put(out, "{\"findings\":[");
    }
    let mut first = true;
    let summary = scan_paths(paths, scanner, |f| {
        let line = if json {
            let sep = if first { "" } else { "," };
            format!("{sep}\n{}", serde_json::to_string(f).unwrap_or_default())
        } else {
            format!("{}:{}: {} ({})\n", f.path, f.offset, f.masked, f.encoding)
        };
        first = false;
        put(out, &line);
    });
    if json {
        let tail = serde_json::to_string(&summary).unwrap_or_default();
        // The summary's fields follow the findings in the same object.
        let tail = tail.strip_prefix('{').unwrap_or(&tail);
        put(out, &format!("\n],{tail}\n"));
    }
    let _ = out.flush();
    let verdict = match summary.exit_code() {
        1 => format!(
            "{} card number{} found in {} of {} files",
            summary.card_numbers,
            if summary.card_numbers == 1 { "" } else { "s" },
            summary.files_with_card_numbers,
            summary.files
        ),
        2 => format!(
            "INCOMPLETE: {} path{} could not be read; no card number in the {} files read",
            summary.unreadable.len(),
            if summary.unreadable.len() == 1 {
                ""
            } else {
                "s"
            },
            summary.files
        ),
        _ => format!("clean: no card number in {} files", summary.files),
    };
    let _ = writeln!(
        err,
        "{program} scan: {verdict} ({} bytes read, every encoding the scanner knows: plain, separated, Unicode digits, UTF-16, hex, base64)",
        summary.bytes
    );
    for n in &summary.unreadable {
        let _ = writeln!(err, "  not read: {}: {}", n.path, n.reason);
    }
    for n in &summary.skipped {
        let _ = writeln!(err, "  skipped: {}: {}", n.path, n.reason);
    }
    summary.exit_code()
}
