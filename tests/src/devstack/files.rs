//! What devstack keeps in its directory: keys, credentials and the service configurations.
//!
//! Everything secret is written with mode 0600 (the directory itself is 0700), through a
//! temporary file and a rename, so an interrupted run never leaves half a key behind.

use std::fmt;
use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The paths of everything devstack keeps.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    /// The directory (absolute).
    pub(crate) dir: PathBuf,
}

impl Layout {
    /// Creates the directory (mode 0700) if needed and resolves it to an absolute path.
    pub(crate) fn open(dir: &Path) -> anyhow::Result<Self> {
        make_private_dir(dir)?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        Ok(Self { dir })
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub(crate) fn master_key(&self) -> PathBuf {
        self.file("master.key")
    }
    pub(crate) fn vault_db(&self) -> PathBuf {
        self.file("vault.db")
    }
    pub(crate) fn vault_toml(&self) -> PathBuf {
        self.file("vault.toml")
    }
    pub(crate) fn proxy_db(&self) -> PathBuf {
        self.file("proxy.db")
    }
    pub(crate) fn proxy_toml(&self) -> PathBuf {
        self.file("proxy.toml")
    }
    pub(crate) fn partner_key(&self) -> PathBuf {
        self.file("partner.pem")
    }
    pub(crate) fn partner_public_key(&self) -> PathBuf {
        self.file("partner.pub.pem")
    }
    pub(crate) fn bank_key(&self) -> PathBuf {
        self.file("bank131-sandbox.pem")
    }
    pub(crate) fn bank_public_key(&self) -> PathBuf {
        self.file("bank131-sandbox.pub.pem")
    }
    pub(crate) fn credentials(&self) -> PathBuf {
        self.file("credentials.json")
    }
    pub(crate) fn commands(&self) -> PathBuf {
        self.file("commands.sh")
    }
    /// The sandbox's `--state-dir`: its sessions and counters outlive a restart.
    pub(crate) fn sandbox_state_dir(&self) -> PathBuf {
        self.file("bank131-sandbox")
    }
}

/// Creates `dir` and its parents (mode 0700) if needed.
pub(crate) fn make_private_dir(dir: &Path) -> anyhow::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// Writes `contents` to `path` with `mode`, atomically (temporary file, fsync, rename).
pub(crate) fn write_file(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // The mode given to open applies only when the file is new.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

/// A secret file: mode 0600.
pub(crate) fn write_secret(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    write_file(path, contents, 0o600)
}

/// Reads a text file, `None` when it does not exist.
pub(crate) fn read_optional(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// One API client: its id and key.
#[derive(Clone, Deserialize, Serialize)]
pub(crate) struct ClientKey {
    /// `cli_…` (vault) or `app_…` (proxy).
    pub(crate) id: String,
    /// The API key, shown to the user.
    pub(crate) key: String,
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The proxy's app client: key, webhook URL and secret.
#[derive(Clone, Deserialize, Serialize)]
pub(crate) struct ProxyClientKey {
    /// `app_…` and its `pk_…` key (flattened: the file holds `id` and `key` beside the rest).
    #[serde(flatten)]
    pub(crate) client: ClientKey,
    /// Where its webhooks go.
    pub(crate) webhook_url: String,
    /// `whsec_…`.
    pub(crate) webhook_secret: String,
}

impl fmt::Debug for ProxyClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The client's own Debug hides its key.
        f.debug_struct("ProxyClientKey")
            .field("client", &self.client)
            .field("webhook_url", &self.webhook_url)
            .finish_non_exhaustive()
    }
}

/// `credentials.json`: the keys made on the first run, shown again on every later run.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub(crate) struct Credentials {
    /// The vault client of the demo app (`tokens:create,tokens:read,tokens:delete`).
    pub(crate) vault_app: Option<ClientKey>,
    /// The vault client the proxy detokenizes and opens payout links' collect sessions with
    /// (`tokens:detokenize,collect:create`).
    pub(crate) vault_proxy: Option<ClientKey>,
    /// The proxy client of the demo app (`payouts:write,payouts:read`).
    pub(crate) proxy_app: Option<ProxyClientKey>,
}

impl Credentials {
    /// Whether both hold the same keys (compared in constant time: they are secrets).
    pub(crate) fn same_as(&self, other: &Self) -> bool {
        let bytes = |c: &Self| serde_json::to_vec(c).unwrap_or_default();
        shared::ct::bytes_eq(&bytes(self), &bytes(other))
    }
}

impl Credentials {
    /// Reads `credentials.json`; empty when there is none yet.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        match read_optional(path)? {
            None => Ok(Self::default()),
            Some(text) => serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not valid; delete it (and the databases) to start over",
                    path.display()
                )
            }),
        }
    }

    /// Writes `credentials.json` (mode 0600).
    pub(crate) fn save(&self, path: &Path) -> anyhow::Result<()> {
        let mut text = serde_json::to_string_pretty(self).context("serializing credentials")?;
        text.push('\n');
        write_secret(path, text.as_bytes())
    }
}

/// A TOML basic string: JSON string escapes are valid TOML escapes.
pub(crate) fn toml_string(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

/// A path as a TOML string.
pub(crate) fn toml_path(path: &Path) -> String {
    toml_string(&path.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_private_and_replace_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        write_secret(&path, b"one").unwrap();
        write_secret(&path, b"two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!dir.path().join("s.json.tmp").exists());
    }

    #[test]
    fn credentials_round_trip_and_debug_hides_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.json");
        assert!(
            Credentials::load(&path)
                .unwrap()
                .same_as(&Credentials::default())
        );
        let creds = Credentials {
            vault_app: Some(ClientKey {
                id: "cli_x".into(),
                key: "vk_secret".into(),
            }),
            vault_proxy: None,
            proxy_app: Some(ProxyClientKey {
                client: ClientKey {
                    id: "app_x".into(),
                    key: "pk_secret".into(),
                },
                webhook_url: "http://127.0.0.1:1/webhooks".into(),
                webhook_secret: "whsec_secret".into(),
            }),
        };
        creds.save(&path).unwrap();
        assert!(Credentials::load(&path).unwrap().same_as(&creds));
        assert!(!format!("{creds:?}").contains("secret"));
    }

    #[test]
    fn toml_strings_escape() {
        assert_eq!(toml_string(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
