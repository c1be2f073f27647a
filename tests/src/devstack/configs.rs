//! The files devstack writes for running the stack as separate processes: `vault.toml`,
//! `proxy.toml`, `commands.sh`, and the partner and sandbox-bank RSA key pairs.

use super::*;
use tls::DevTls;

/// Reads a key pair, or makes one (private key 0600) when either half is missing.
pub(super) fn key_pair(
    private: &Path,
    public: &Path,
    made: &mut bool,
) -> anyhow::Result<(String, String)> {
    if let (Some(private_pem), Some(public_pem)) = (
        files::read_optional(private)?,
        files::read_optional(public)?,
    ) {
        return Ok((private_pem, public_pem));
    }
    let (private_pem, public_pem) =
        sandbox::generate_rsa_keypair_pem().context("generating an RSA key pair")?;
    files::write_secret(private, private_pem.as_bytes())?;
    files::write_file(public, public_pem.as_bytes(), 0o644)?;
    *made = true;
    Ok((private_pem, public_pem))
}

/// The `[server]`, `[server.tls]` and `[database]` sections both services take, the same way;
/// the vault's TLS also asks for client certificates (the proxy's).
fn server_and_database(port: u16, db: &Path, tls: &DevTls, client_ca: bool) -> String {
    let client_ca = if client_ca {
        format!(
            "# Client certificates must chain to this CA; the proxy's vault client is bound to\n\
             # its certificate (vault clients create ... --cert-file).\n\
             client_ca_file = {}\n",
            files::toml_path(&tls.ca_file())
        )
    } else {
        String::new()
    };
    format!(
        "[server]\n\
         listen = \"{listen}\"\n\
         shutdown_timeout_ms = {SHUTDOWN_GRACE_MS}\n\
         \n\
         # The services re-read these on SIGHUP; devstack makes a new set (CA included) when\n\
         # they near expiry.\n\
         [server.tls]\n\
         cert_file = {cert}\n\
         key_file = {key}\n\
         {client_ca}\
         \n\
         [database]\n\
         path = {db}\n",
        listen = loopback(port),
        cert = files::toml_path(&tls.server_cert()),
        key = files::toml_path(&tls.server_key()),
        db = files::toml_path(db),
    )
}

pub(super) fn vault_toml(layout: &Layout, port: u16, tls: &DevTls) -> String {
    format!(
        "# Written by devstack at every start. To run this vault on its own:\n\
         #   vault --config {config} serve\n\
         {server_and_database}\
         \n\
         [keys]\n\
         master_key_file = {key}\n\
         \n\
         [log]\n\
         filter = \"info\"\n",
        config = layout.vault_toml().display(),
        server_and_database = server_and_database(port, &layout.vault_db(), tls, true),
        key = files::toml_path(&layout.master_key()),
    )
}

pub(super) fn proxy_toml(
    layout: &Layout,
    options: &Options,
    vault_proxy_key: &str,
    tls: &DevTls,
) -> String {
    format!(
        "# Written by devstack at every start (it holds a vault key: mode 0600). To run this\n\
         # proxy on its own:\n\
         #   proxy --config {config} serve\n\
         {server_and_database}\
         \n\
         [vault]\n\
         url = \"https://{vault}\"\n\
         ca_file = {ca}\n\
         # Mutual TLS: the vault binds this proxy's key to this certificate.\n\
         client_cert_file = {client_cert}\n\
         client_key_file = {client_key}\n\
         \n\
         [vault.api_keys]\n\
         {TENANT} = {key}\n\
         \n\
         [bank131]\n\
         base_url = \"https://{sandbox}\"\n\
         ca_file = {ca}\n\
         project = \"{PROJECT}\"\n\
         private_key_file = {partner}\n\
         bank_public_key_file = {bank}\n\
         api_version = \"v2\"\n\
         connect_timeout_ms = 1000\n\
         request_timeout_ms = 5000\n\
         \n\
         # Fast engine settings for a local demo. stuck_after_ms is also the lease on a payout\n\
         # being driven: at least connect + request timeouts + 1 s.\n\
         [payouts]\n\
         reconcile_interval_ms = 500\n\
         stuck_after_ms = 8000\n\
         retry_initial_ms = 200\n\
         retry_max_ms = 5000\n\
         \n\
         [webhooks]\n\
         # The devstack's apps listen on loopback; never set this in production.\n\
         allow_private_networks = true\n\
         ca_file = {ca}\n\
         poll_interval_ms = 100\n\
         retry_initial_ms = 200\n\
         retry_max_ms = 10000\n\
         \n\
         [log]\n\
         filter = \"info\"\n",
        config = layout.proxy_toml().display(),
        server_and_database =
            server_and_database(options.proxy_port, &layout.proxy_db(), tls, false),
        ca = files::toml_path(&tls.ca_file()),
        client_cert = files::toml_path(&tls.proxy_cert()),
        client_key = files::toml_path(&tls.proxy_key()),
        vault = loopback(options.vault_port),
        key = files::toml_string(vault_proxy_key),
        sandbox = loopback(options.sandbox_port),
        partner = files::toml_path(&layout.partner_key()),
        bank = files::toml_path(&layout.bank_public_key()),
    )
}

pub(super) fn commands_sh(layout: &Layout, options: &Options, tls: &DevTls) -> String {
    let dir = layout.dir.display().to_string();
    let ca = tls.ca_file().display().to_string();
    format!(
        "#!/bin/sh\n\
         # Written by devstack: the same stack as separate processes, from the repository root.\n\
         # (The app webhook receiver is devstack's own; without it the proxy retries its webhooks.\n\
         # The sandbox keeps its sessions and id counters in $D/bank131-sandbox, as devstack's\n\
         # does, so payouts in flight carry on across restarts of either.) Needs curl.\n\
         D={d}\n\
         CA={ca}\n\
         cargo build --release --bin vault --bin proxy --bin bank131-sandbox || exit 1\n\
         ./target/release/bank131-sandbox --listen {sandbox} \\\n  \
           --bank-key \"$D/bank131-sandbox.pem\" --bank-public-key-out \"$D/bank131-sandbox.pub.pem\" \\\n  \
           --state-dir \"$D/bank131-sandbox\" \\\n  \
           --project-id {PROJECT} --partner-public-key \"$D/partner.pub.pem\" \\\n  \
           --tls-cert \"$D/tls/server.crt\" --tls-key \"$D/tls/server.key\" --webhook-ca-file \"$CA\" \\\n  \
           --webhook-url https://{proxy}/webhooks/bank131 --wallet-balance {WALLET_BALANCE} &\n\
         ./target/release/vault --config \"$D/vault.toml\" serve &\n\
         VAULT_PID=$!\n\
         # The proxy checks its vault key as it starts: wait until the vault answers (or stops).\n\
         until curl -sf --cacert \"$CA\" https://{vault}/readyz > /dev/null; do\n  \
           kill -0 \"$VAULT_PID\" 2>/dev/null || {{ echo 'commands.sh: the vault stopped (its output is above)' >&2; exit 1; }}\n  \
           sleep 0.2\n\
         done\n\
         ./target/release/proxy --config \"$D/proxy.toml\" serve &\n\
         wait\n",
        d = sh_quote(&dir),
        ca = sh_quote(&ca),
        sandbox = loopback(options.sandbox_port),
        proxy = loopback(options.proxy_port),
        vault = loopback(options.vault_port),
    )
}

/// `text` as one word for sh: in single quotes, each `'` written as `'\''`.
fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}
