//! PCI DSS §5 case 40 and the hardening both services get from `shared::server::run_command`:
//! a panic with a card number in flight prints no card number (whatever `RUST_BACKTRACE` says),
//! an abort leaves no core file, and the vault and the proxy run with core dumps off and
//! non-dumpable. The probe (`src/bin/panic-probe.rs`) is set up exactly as the services are.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use shared::Pan;

const PAN: &str = "4000056655665556";

fn probe(mode: &str, cwd: &Path) -> (Option<i32>, String) {
    let out = Command::new("sh")
        .arg("-c")
        // Allow cores for the probe, as a careless environment would: only the probe's own
        // hardening can then keep one from being written.
        .arg("ulimit -c unlimited 2>/dev/null; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_panic-probe"))
        .arg(mode)
        .current_dir(cwd)
        .env("PROBE_PAN", PAN)
        .env("RUST_BACKTRACE", "full")
        .env("RUST_LIB_BACKTRACE", "1")
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

fn cores(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n == "core" || n.starts_with("core."))
        .collect()
}

#[test]
fn pci_40_a_panic_or_abort_with_a_card_in_flight_leaks_nothing() {
    let pan = Pan::parse(PAN).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (mode, code) in [("task", Some(3)), ("main", Some(101))] {
        let (exit, text) = probe(mode, dir.path());
        assert_eq!(exit, code, "{mode}: {text}");
        assert!(text.contains("payload withheld"), "{mode}: {text}");
        assert!(
            text.contains("panic-probe.rs:"),
            "{mode}: no location: {text}"
        );
        assert!(
            !shared::scan::contains_pan_any_encoding(text.as_bytes(), &pan),
            "{mode}: the card number is in the output:\n{text}"
        );
        assert!(
            shared::scan::find_pans(text.as_bytes()).is_empty(),
            "{mode}: {text}"
        );
    }

    // Can this environment write a core at all? A control process, not hardened, says.
    let mut control = Command::new("sh")
        .arg("-c")
        .arg("ulimit -c unlimited 2>/dev/null; exec sleep 60")
        .current_dir(dir.path())
        .spawn()
        .unwrap();
    let _ = Command::new("kill")
        .args(["-ABRT", &control.id().to_string()])
        .status();
    let _ = control.wait();
    let control_cores = cores(dir.path());
    for core in &control_cores {
        std::fs::remove_file(dir.path().join(core)).unwrap();
    }
    if control_cores.is_empty() {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "note: this machine writes no core files even unhardened; the abort check below proves less here"
        );
    }
    let (exit, text) = probe("abort", dir.path());
    assert_eq!(exit, None, "abort ends by signal: {text}");
    assert!(cores(dir.path()).is_empty(), "the probe left a core file");
    assert!(!shared::scan::contains_pan_any_encoding(
        text.as_bytes(),
        &pan
    ));
}

/// Runs `binary args` in `dir`, as an unprivileged user when the test runs as root (so that
/// "not dumpable" can be seen from outside: it makes the process's `/proc` files root's).
fn spawn_as_user(binary: &str, dir: &Path, args: &[&str], log: &Path) -> Child {
    let mut cmd = if is_root() {
        chown_all(dir);
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(binary);
        c
    } else {
        Command::new(binary)
    };
    cmd.args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").unwrap().uid() == 0
}

fn chown_all(dir: &Path) {
    std::os::unix::fs::chown(dir, Some(65534), Some(65534)).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        std::os::unix::fs::chown(entry.unwrap().path(), Some(65534), Some(65534)).unwrap();
    }
}

fn wait_for(child: &mut Child, log: &Path, needle: &str) {
    let deadline = std::time::Instant::now() + tests::ready::READY_DEADLINE;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("exited ({status}) before {needle:?}: {text}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {needle:?}: {text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// What a running service's `/proc` says about its core dumps and dumpability.
fn assert_hardened(child: &Child, what: &str) {
    let pid = child.id();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(&fields[4..6], ["0", "0"], "{what}: {core}");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(
        uid, 0,
        "{what} runs as root: the check below would prove nothing"
    );
    // A non-dumpable process's /proc files belong to root, not to the process's user.
    let owner = std::fs::metadata(format!("/proc/{pid}/environ"))
        .unwrap()
        .uid();
    assert_eq!(
        owner, 0,
        "{what} is dumpable (its /proc files belong to uid {owner})"
    );
}

#[test]
fn pci_40_both_services_run_with_core_dumps_off_and_not_dumpable() {
    // The vault.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("vault.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[database]\npath = \"{}\"\n[keys]\nmaster_key_file = \"{}\"\n[log]\nformat = \"json\"\n",
            d.join("vault.db").display(),
            d.join("master.key").display()
        ),
    )
    .unwrap();
    let vault = env!("CARGO_BIN_EXE_e2e-vault");
    let log = d.join("init.log");
    let mut init = spawn_as_user(vault, d, &["--config", "vault.toml", "init"], &log);
    assert!(
        init.wait().unwrap().success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let log = d.join("vault.log");
    let mut serving = spawn_as_user(vault, d, &["--config", "vault.toml", "serve"], &log);
    wait_for(&mut serving, &log, "vault listening");
    assert_hardened(&serving, "vault serve");
    let _ = serving.kill();
    let _ = serving.wait();

    // The proxy (it starts without reaching the vault or the bank).
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (private, public) = tests::sandbox::generate_rsa_keypair_pem().unwrap();
    tests::stack::write_secret(&d.join("partner.pem"), private).unwrap();
    std::fs::write(d.join("bank.pub.pem"), public).unwrap();
    std::fs::write(
        d.join("proxy.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[database]\npath = \"{}\"\n[vault]\nurl = \"http://127.0.0.1:9\"\n\
             [bank131]\nbase_url = \"http://127.0.0.1:9\"\nproject = \"p\"\nprivate_key_file = \"{}\"\nbank_public_key_file = \"{}\"\n[log]\nformat = \"json\"\n",
            d.join("proxy.db").display(),
            d.join("partner.pem").display(),
            d.join("bank.pub.pem").display()
        ),
    )
    .unwrap();
    let log = d.join("proxy.log");
    let mut serving = spawn_as_user(
        env!("CARGO_BIN_EXE_e2e-proxy"),
        d,
        &["--config", "proxy.toml", "serve"],
        &log,
    );
    wait_for(&mut serving, &log, "proxy listening");
    assert_hardened(&serving, "proxy serve");
    let _ = serving.kill();
    let _ = serving.wait();
}
