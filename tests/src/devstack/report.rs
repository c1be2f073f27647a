//! What devstack prints: whole lines from any task ([`Printer`]), and the running stack's
//! report (the banner, the demo's steps, the ready-to-paste curl commands).

use super::*;

/// Where devstack's report goes (stdout in the binary): whole lines, flushed at once, from any
/// task.
#[derive(Clone)]
pub struct Printer(Arc<Mutex<Box<dyn Write + Send>>>);

impl Printer {
    /// Lines to standard output.
    pub fn stdout() -> Self {
        Self::new(std::io::stdout())
    }

    /// Lines to `writer`.
    pub fn new(writer: impl Write + Send + 'static) -> Self {
        Self(Arc::new(Mutex::new(Box::new(writer))))
    }

    /// Writes one line. A closed output (a pipe whose reader went away) is not an error worth
    /// stopping the services for, so write errors are ignored.
    pub fn line(&self, text: impl AsRef<str>) {
        let mut w = self.0.lock();
        let _ = writeln!(w, "{}", text.as_ref());
        let _ = w.flush();
    }
}

impl fmt::Debug for Printer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Printer")
    }
}

/// The running stack, as the report and the demo see it.
#[derive(Debug)]
pub(super) struct Running<'a> {
    pub(super) options: &'a Options,
    pub(super) out: &'a Printer,
    pub(super) layout: &'a Layout,
    pub(super) made: &'a [String],
    pub(super) reused: bool,
    pub(super) vault_url: &'a str,
    pub(super) proxy_url: &'a str,
    pub(super) sandbox_url: &'a str,
    pub(super) app_url: &'a str,
    pub(super) tls: &'a tls::DevTls,
    pub(super) vault_app: &'a ClientKey,
    pub(super) proxy_app: &'a ProxyClientKey,
    pub(super) sandbox: &'a SandboxHandle,
    pub(super) http: &'a reqwest::Client,
    pub(super) proxy_store: &'a Arc<dyn proxy::store::ProxyStore>,
    pub(super) quiet: &'a AtomicBool,
}

impl Running<'_> {
    /// Prints the banner, runs the demo, prints the curl examples, then serves until `stop`
    /// (or returns at once under `exit_after_demo`).
    pub(super) async fn present(
        &self,
        events: &mut mpsc::UnboundedReceiver<receiver::AppEvent>,
        exits: &mut mpsc::UnboundedReceiver<Exit>,
        stop: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let out = self.out;
        let exit_after_demo = self.options.exit_after_demo;
        let mut stop = std::pin::pin!(stop);
        self.banner();
        let mut outcome = None;
        if self.options.demo {
            self.quiet.store(true, Ordering::SeqCst);
            let demo = demo::Demo {
                http: self.http.clone(),
                vault_url: self.vault_url,
                vault_key: &self.vault_app.key,
                proxy_url: self.proxy_url,
                proxy_key: &self.proxy_app.client.key,
                sandbox: self.sandbox,
                events,
                out,
                step_timeout: self.options.step_timeout,
            };
            let result = tokio::select! {
                result = demo.run() => result,
                () = &mut stop => {
                    out.line("stopped during the demo");
                    return if exit_after_demo {
                        Err(anyhow!("stopped during the demo"))
                    } else {
                        Ok(())
                    };
                }
            };
            self.quiet.store(false, Ordering::SeqCst);
            match result {
                Ok(o) => outcome = Some(o),
                Err(e) if exit_after_demo => return Err(e),
                Err(e) => {
                    out.line(format!("demo FAILED: {e:#}"));
                    out.line("(the services keep running, so you can look into it)");
                }
            }
        }
        self.try_it(outcome.as_ref());
        if exit_after_demo {
            // The app may have its webhook a moment before the proxy has marked it delivered;
            // stopping in between would deliver it again on the next run.
            outbox_settled(self.proxy_store).await;
            return Ok(());
        }
        out.line("serving until Ctrl-C (SIGINT) or SIGTERM");
        tokio::select! {
            () = &mut stop => {
                out.line("stopping");
                Ok(())
            }
            exit = exits.recv() => Err(match exit {
                Some((name, Ok(()))) => anyhow!("the {name} stopped on its own"),
                Some((name, Err(e))) => e.context(format!("the {name} failed")),
                None => anyhow!("every service stopped"),
            }),
        }
    }

    pub(super) fn banner(&self) {
        let out = self.out;
        let dir = self.layout.dir.display();
        out.line(format!("devstack: state in {dir}"));
        if self.made.is_empty() && self.reused {
            out.line(
                "  reused: every key, client and database from an earlier run (no new clients)",
            );
        } else {
            out.line(format!("  created: {}", self.made.join(", ")));
        }
        out.line("");
        out.line(format!("  vault    {}", self.vault_url));
        out.line(format!("  proxy    {}", self.proxy_url));
        out.line(format!(
            "  bank131  {}   (sandbox, project {PROJECT}; bank webhooks go to {}/webhooks/bank131)",
            self.sandbox_url, self.proxy_url
        ));
        out.line(format!(
            "  app      {}   (demo webhook receiver; checks X-Signature)",
            self.app_url
        ));
        out.line(format!(
            "  shop     {}/   (open in a browser: a checkout page framing the vault's card form; the card becomes a token, then a payout)",
            self.app_url.trim_end_matches(receiver::PATH)
        ));
        out.line("");
        out.line(format!(
            "  vault app key    {}   (tenant {TENANT}: {VAULT_APP_SCOPES})",
            self.vault_app.key
        ));
        out.line(format!(
            "  proxy app key    {}   (tenant {TENANT}: {PROXY_APP_SCOPES})",
            self.proxy_app.client.key
        ));
        out.line(format!(
            "  webhook secret   {}   (X-Signature: t=<unix>,v1=<hex HMAC-SHA-256(secret, \"t.body\")>)",
            self.proxy_app.webhook_secret
        ));
        out.line(format!(
            "  kept in {dir}/credentials.json; configs {dir}/vault.toml, {dir}/proxy.toml; \
             separate processes: {dir}/commands.sh"
        ));
        out.line("");
        out.line(format!(
            "  TLS on every hop, certificates from a local CA: {} (curl --cacert); the proxy \
             reaches the vault with mutual TLS, its vault key bound to {}",
            self.tls.ca_file().display(),
            self.tls.proxy_cert().display()
        ));
        out.line(format!(
            "  browsers: import that CA as an authority (again after devstack renews it), or start \
             Chromium with --user-data-dir=\"$(mktemp -d)\" \
             --ignore-certificate-errors-spki-list={} (it then accepts this stack's key, and \
             still refuses every other certificate error)",
            self.tls.server_spki_sha256
        ));
        out.line("");
    }

    pub(super) fn try_it(&self, outcome: Option<&demo::Outcome>) {
        const TOKENIZE: &str = r#"  curl -s --cacert $CA -X POST $VAULT/v1/tokens -H "Authorization: Bearer $VAULT_KEY" -H 'Content-Type: application/json' -d '{"pan":"4242 4242 4242 4242","exp_month":12,"exp_year":2030}'"#;
        const PAY: &str = r#"  curl -s --cacert $CA -X POST $PROXY/v1/payouts -H "Authorization: Bearer $PROXY_KEY" -H 'Content-Type: application/json' -H "Idempotency-Key: try-$(date +%s)" -d '{"card_token":"'$TOKEN'","amount":10000,"currency":"RUB","recipient":{"full_name":"Ivan Petrov"},"confirm":"auto"}'"#;
        const READ: &str = r#"  curl -s --cacert $CA $PROXY/v1/payouts/$PAYOUT -H "Authorization: Bearer $PROXY_KEY""#;
        let out = self.out;
        let (token, payout, note) = match outcome {
            Some(o) => (
                o.token.as_str(),
                o.payout_id.as_str(),
                " (this one is the demo's)",
            ),
            None => ("tok_...", "pay_...", ""),
        };
        out.line("");
        out.line("try it (paste into a shell):");
        out.line(format!(
            "  export CA={} VAULT={} PROXY={} VAULT_KEY={} PROXY_KEY={}",
            self.tls.ca_file().display(),
            self.vault_url,
            self.proxy_url,
            self.vault_app.key,
            self.proxy_app.client.key
        ));
        out.line("  # tokenize a test card at the vault");
        out.line(TOKENIZE);
        out.line(format!(
            "  TOKEN={token}   # the \"token\" from the answer{note}"
        ));
        out.line("  # create a payout at the proxy (the Idempotency-Key makes retries safe)");
        out.line(PAY);
        out.line(format!(
            "  PAYOUT={payout}   # the \"id\" from the answer{note}"
        ));
        out.line("  # read it");
        out.line(READ);
        out.line("");
    }
}
