//! `vault scan` and `proxy scan`: the boundary scanner over files and directories, for anyone
//! to run on any host (it needs no configuration): logs, database files and dumps, captures,
//! exported queues. A path named on the command line is read whatever it is (a link is
//! followed, a pipe such as `<(zcat x.gz)` read); inside directories, links are never followed
//! and devices, sockets and pipes are passed over (listed), and a file is opened without
//! following a link and checked to be a regular file after it is opened, so a file swapped
//! for a link meanwhile is not read through. Kernel pseudo-filesystems (`/proc`, `/sys`, …)
//! are not walked, so `vault scan /` ends. `-` reads standard input
//! (`pg_dump app | vault scan -`). Every file is read as a stream ([`StreamScanner`]), so a
//! multi-gigabyte dump takes no more memory than a small one. Compressed files (gzip, bzip2, xz,
//! zstd, zip, PostgreSQL's custom dump format) cannot be read as they are: they are listed as
//! not read, with the command that would, so that the scan is incomplete rather than clean.
//!
//! Only masked values are printed (BIN and last four), with the file and byte offset; a path
//! that itself holds a long digit run is printed masked, and control characters in paths are
//! escaped (a file name cannot forge a line of the report). Exit status: 0 when at least one
//! file was read, everything was, and nothing was found; 1 when a card number was found; 3
//! when something could not be read, nothing was, or the report could not be written (a clean
//! result is never claimed for files the scanner did not see).

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
    /// 0 clean, 1 found, 3 incomplete (or nothing read). Not 2: that is every command's
    /// status for a command line that does not parse.
    pub fn exit_code(&self) -> u8 {
        if self.card_numbers > 0 {
            1
        } else if !self.unreadable.is_empty() || self.files == 0 {
            INCOMPLETE
        } else {
            0
        }
    }
}

/// The exit status of a scan that did not read everything, or whose report could not be written.
pub const INCOMPLETE: u8 = 3;

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
            named(path, scanner, &mut summary, &mut found);
        }
    }
    summary
}

/// A path as the report shows it: long digit runs masked, control characters escaped.
fn shown(path: &Path) -> String {
    mask_pans(&path.to_string_lossy())
        .chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// A path named on the command line: followed and read whatever it is, except a directory,
/// which is walked.
fn named(
    path: &Path,
    scanner: StreamScanner,
    summary: &mut Summary,
    found: &mut impl FnMut(&PathFinding),
) {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => walk(path, scanner, summary, found),
        Ok(_) => match std::fs::File::open(path) {
            Ok(file) => scan_file(shown(path), file, scanner, summary, found),
            Err(e) => summary.unreadable.push(NotRead {
                path: shown(path),
                reason: e.to_string(),
            }),
        },
        Err(e) => summary.unreadable.push(NotRead {
            path: shown(path),
            reason: e.to_string(),
        }),
    }
}

/// Kernel pseudo-filesystems (their magic numbers, linux/magic.h): their files are not data,
/// report sizes they do not have, and some never end (`/proc/kcore`) or block (`/proc/kmsg`),
/// so `vault scan /` must not walk into them.
const PSEUDO_FILESYSTEMS: &[(u64, &str)] = &[
    (0x9fa0, "proc"),
    (0x6265_6572, "sysfs"),
    (0x1cd1, "devpts"),
    (0x0027_e0eb, "cgroup"),
    (0x6367_7270, "cgroup2"),
    (0x6462_6720, "debugfs"),
    (0x7472_6163, "tracefs"),
    (0x7363_6673, "securityfs"),
    (0xcafe_4a11, "bpf"),
    (0x6165_676c, "pstore"),
    (0x6265_6570, "configfs"),
    (0x6573_5543, "fusectl"),
    (0x1980_0202, "mqueue"),
];

/// The kernel pseudo-filesystem `dir` is on, if it is one.
fn pseudo_filesystem(dir: &Path) -> Option<&'static str> {
    let stat = rustix::fs::statfs(dir).ok()?;
    let magic = u64::try_from(stat.f_type).ok()?;
    PSEUDO_FILESYSTEMS
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, name)| *name)
}

/// Opens a file met inside a directory: not through a link, not blocking on a pipe, and only
/// if what was opened is a regular file (it may have been swapped since it was listed).
fn open_listed(path: &Path) -> io::Result<Option<std::fs::File>> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(i32::try_from(flags.bits()).unwrap_or_default())
        .open(path)?;
    Ok(file.metadata()?.is_file().then_some(file))
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
        if let Some(name) = pseudo_filesystem(path) {
            return summary.skipped.push(not_read(format!(
                "{name}, a kernel pseudo-filesystem: not data, not walked"
            )));
        }
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
        match open_listed(path) {
            Ok(Some(file)) => scan_file(shown(path), file, scanner, summary, found),
            Ok(None) => summary
                .skipped
                .push(not_read("no longer a regular file when opened".to_owned())),
            Err(e) => summary.unreadable.push(not_read(e.to_string())),
        }
    } else {
        summary.skipped.push(not_read(
            "not a regular file (a device, socket or pipe)".to_owned(),
        ));
    }
}

/// The formats whose contents a byte scan cannot see: their magic bytes, and how to read them.
const COMPRESSED: &[(&[u8], &str)] = &[
    (b"\x1f\x8b", "gzip: scan `zcat FILE | vault scan -`"),
    (b"BZh", "bzip2: scan `bzcat FILE | vault scan -`"),
    (b"\xfd7zXZ\x00", "xz: scan `xzcat FILE | vault scan -`"),
    (
        b"\x28\xb5\x2f\xfd",
        "zstd: scan `zstdcat FILE | vault scan -`",
    ),
    (
        b"PK\x03\x04",
        "zip (or xlsx, docx): scan `unzip -p FILE | vault scan -`",
    ),
    (
        b"PGDMP",
        "a pg_dump custom-format archive: scan `pg_restore -f - FILE | vault scan -`",
    ),
];

fn scan_file(
    name: String,
    mut reader: impl io::Read,
    scanner: StreamScanner,
    summary: &mut Summary,
    found: &mut impl FnMut(&PathFinding),
) {
    // The first bytes say whether the contents are compressed; they are then scanned with the
    // rest.
    let mut head = [0u8; 8];
    let mut got = 0;
    while got < head.len() {
        match reader.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return summary.unreadable.push(NotRead {
                    path: name,
                    reason: e.to_string(),
                });
            }
        }
    }
    let head = &head[..got];
    if let Some((_, how)) = COMPRESSED.iter().find(|(magic, _)| head.starts_with(magic)) {
        return summary.unreadable.push(NotRead {
            path: name,
            reason: format!("compressed, not scanned: {how}"),
        });
    }
    let reader = io::Read::chain(head, reader);
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
    // What it reads may hold card numbers: no core dump may keep them, and a panic's message
    // is withheld, as in every other command.
    if let Err(e) = crate::server::harden_process() {
        eprintln!("{program}: {e}");
        return ExitCode::from(INCOMPLETE);
    }
    crate::telemetry::install_panic_hook();
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
    // A report that could not be written (a full disk, a closed pipe) is no evidence: the
    // status says incomplete whatever was found.
    let mut broken: Option<io::Error> = None;
    let mut put = |out: &mut dyn Write, text: &str| {
        if broken.is_none()
            && let Err(e) = out.write_all(text.as_bytes())
        {
            broken = Some(e);
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
    if let Err(e) = out.flush() {
        broken.get_or_insert(e);
    }
    let verdict = match summary.exit_code() {
        1 => format!(
            "{} card number{} found in {} of {} files{}",
            summary.card_numbers,
            if summary.card_numbers == 1 { "" } else { "s" },
            summary.files_with_card_numbers,
            summary.files,
            match summary.unreadable.len() {
                0 => String::new(),
                n => format!(", and {n} path{} not read", if n == 1 { "" } else { "s" }),
            }
        ),
        INCOMPLETE => format!(
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
    let verdict = match (summary.exit_code(), summary.files) {
        (INCOMPLETE, 0) if summary.unreadable.is_empty() => {
            "INCOMPLETE: no file was read".to_owned()
        }
        _ => verdict,
    };
    let verdict = match summary.skipped.len() {
        0 => verdict,
        n => format!("{verdict}; {n} skipped (listed below)"),
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
    if let Some(e) = broken {
        let _ = writeln!(
            err,
            "{program} scan: INCOMPLETE: the report could not be written: {e}"
        );
        return INCOMPLETE;
    }
    summary.exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("no space left on device"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_report_that_cannot_be_written_is_incomplete_whatever_was_found() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.log"), "card 4111 1111 1111 1111\n").unwrap();
        let paths = [dir.path().to_owned()];
        let mut err = Vec::new();
        let written = report(
            "vault",
            &paths,
            false,
            StreamScanner::default(),
            &mut Vec::new(),
            &mut err,
        );
        assert_eq!(written, 1);
        let mut err = Vec::new();
        let code = report(
            "vault",
            &paths,
            true,
            StreamScanner::default(),
            &mut Full,
            &mut err,
        );
        assert_eq!(code, INCOMPLETE);
        let err = String::from_utf8(err).unwrap();
        assert!(
            err.contains("the report could not be written: no space left on device"),
            "{err}"
        );
    }
}
