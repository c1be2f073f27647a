//! `devstack`: the vault, the proxy, the Bank 131 sandbox and a demo app's webhook receiver on
//! loopback in this one process, with their state under `./.devstack/` (made on the first run,
//! reused after), then one payout walked through every step. See `tests::devstack`.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tests::devstack::{self, Options, Printer};

/// Vault + payout proxy + Bank 131 sandbox on loopback, with a demo payout.
#[derive(Debug, Parser)]
#[command(name = "devstack", about, long_about = None)]
struct Args {
    /// Where keys, databases, credentials and configs live (made if missing, reused after).
    #[arg(long, default_value = ".devstack")]
    dir: PathBuf,
    /// The vault's port on 127.0.0.1.
    #[arg(long, default_value_t = 8200, value_parser = clap::value_parser!(u16).range(1..))]
    vault_port: u16,
    /// The proxy's port.
    #[arg(long, default_value_t = 8300, value_parser = clap::value_parser!(u16).range(1..))]
    proxy_port: u16,
    /// The Bank 131 sandbox's port.
    #[arg(long, default_value_t = 8131, value_parser = clap::value_parser!(u16).range(1..))]
    sandbox_port: u16,
    /// The demo app's webhook receiver's port (kept in the proxy's app client: changing it
    /// makes a new client, with a new key).
    #[arg(long, default_value_t = 8400, value_parser = clap::value_parser!(u16).range(1..))]
    app_port: u16,
    /// Do not run the demo payout.
    #[arg(long, conflicts_with = "exit_after_demo")]
    no_demo: bool,
    /// Exit after the demo: status 0 when it succeeded, 1 when not (for tests and CI).
    #[arg(long)]
    exit_after_demo: bool,
    /// How long each demo step may take, in seconds.
    #[arg(long, default_value_t = 30)]
    step_timeout: u64,
    /// Log filter for stderr (tracing syntax), e.g. `info` or `proxy=debug,warn`.
    #[arg(long, default_value = "warn")]
    log: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if shared::telemetry::init(
        shared::telemetry::LogFormat::Text,
        &args.log,
        std::io::stderr,
    )
    .is_err()
    {
        eprintln!("devstack: --log: invalid filter");
        return ExitCode::from(64);
    }
    shared::telemetry::install_panic_hook();
    let options = Options {
        dir: args.dir,
        vault_port: args.vault_port,
        proxy_port: args.proxy_port,
        sandbox_port: args.sandbox_port,
        app_port: args.app_port,
        demo: !args.no_demo,
        exit_after_demo: args.exit_after_demo,
        step_timeout: Duration::from_secs(args.step_timeout.max(1)),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("devstack: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The signal handlers are installed inside the runtime, before the stack prints a line.
    let result = runtime.block_on(async {
        devstack::run(
            options,
            Printer::stdout(),
            proxy::startup::shutdown_signal(),
        )
        .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("devstack: {e:#}");
            ExitCode::FAILURE
        }
    }
}
