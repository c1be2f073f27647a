//! Files that hold secrets: readable by their owner only.
//!
//! A key or a config holding keys that the group or everyone can read is a key everyone on the
//! host has. The proxy refuses such files at start (partner key, passphrase, vault key files, a
//! config with inline keys), naming the file and the chmod; the vault checks its master key file
//! the same way in its own code.

use std::path::Path;

/// Why a secret file was refused. The message names the file and the fix, never its content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretFileError {
    /// Group or others may read or write it.
    #[error(
        "{what} {path} can be read by group or others (mode {mode:04o}); it holds secrets: chmod 600 {path}"
    )]
    TooOpen {
        /// What the file is (`bank131.private_key_file`).
        what: String,
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// It cannot be read.
    #[error("{what} {path}: {source}")]
    Unreadable {
        /// What the file is.
        what: String,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Refuses `path` (the setting `what`) when group or others have any access to it.
///
/// # Errors
///
/// [`SecretFileError`].
pub fn ensure_private(path: &Path, what: &str) -> Result<(), SecretFileError> {
    let meta = std::fs::metadata(path).map_err(|source| SecretFileError::Unreadable {
        what: what.to_owned(),
        path: path.display().to_string(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SecretFileError::TooOpen {
                what: what.to_owned(),
                path: path.display().to_string(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    Ok(())
}

/// Reads a secret file (after [`ensure_private`]): its first line, without the line end.
///
/// # Errors
///
/// [`SecretFileError`].
pub fn read_secret_line(
    path: &Path,
    what: &str,
) -> Result<zeroize::Zeroizing<String>, SecretFileError> {
    ensure_private(path, what)?;
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
        SecretFileError::Unreadable {
            what: what.to_owned(),
            path: path.display().to_string(),
            source,
        }
    })?);
    let line = text.lines().next().unwrap_or_default().trim();
    Ok(zeroize::Zeroizing::new(line.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn open_files_are_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "vk_secret\n").unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = ensure_private(&path, "vault.api_key_files.acme")
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("chmod 600") && e.contains("vault.api_key_files.acme"),
                "{e}"
            );
            assert!(!e.contains("vk_secret"));
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_secret_line(&path, "x").unwrap().as_str(), "vk_secret");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(ensure_private(&path, "x").is_ok());
        assert!(ensure_private(&dir.path().join("missing"), "x").is_err());
    }
}
