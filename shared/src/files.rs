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
    /// It is larger than any secret it could hold.
    #[error("{what} {path} is larger than {max} bytes; it should hold one line")]
    TooLarge {
        /// What the file is.
        what: String,
        /// The file.
        path: String,
        /// The most it may hold.
        max: usize,
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

/// The most a secret file read by [`read_secret_line`] may hold.
pub const SECRET_FILE_MAX: usize = 4096;

/// Reads all of `from` into `buf`, which never grows (a growing buffer leaves copies of what it
/// held in freed memory, unzeroized): the length read, or `None` when the content does not fit.
///
/// # Errors
///
/// The read fails.
pub fn read_bounded(
    from: &mut impl std::io::Read,
    buf: &mut [u8],
) -> std::io::Result<Option<usize>> {
    let mut len = 0;
    loop {
        if len == buf.len() {
            // Full: one more byte means it did not fit.
            let mut probe = zeroize::Zeroizing::new([0u8; 1]);
            loop {
                match from.read(probe.as_mut_slice()) {
                    Ok(n) => return Ok((n == 0).then_some(len)),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        match from.read(&mut buf[len..]) {
            Ok(0) => return Ok(Some(len)),
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reads a secret file (after [`ensure_private`]): its first line, without the line end, read
/// into a buffer that never grows (at most [`SECRET_FILE_MAX`] bytes).
///
/// # Errors
///
/// [`SecretFileError`].
pub fn read_secret_line(
    path: &Path,
    what: &str,
) -> Result<zeroize::Zeroizing<String>, SecretFileError> {
    ensure_private(path, what)?;
    let unreadable = |source| SecretFileError::Unreadable {
        what: what.to_owned(),
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(unreadable)?;
    let mut buf = zeroize::Zeroizing::new(vec![0u8; SECRET_FILE_MAX]);
    let len = read_bounded(&mut file, &mut buf)
        .map_err(unreadable)?
        .ok_or_else(|| SecretFileError::TooLarge {
            what: what.to_owned(),
            path: path.display().to_string(),
            max: SECRET_FILE_MAX,
        })?;
    let text = std::str::from_utf8(&buf[..len]).map_err(|_| {
        unreadable(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not UTF-8 text",
        ))
    })?;
    let line = text.lines().next().unwrap_or_default().trim();
    Ok(zeroize::Zeroizing::new(line.to_owned()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bounded_read_fills_its_buffer_and_refuses_one_byte_more() {
        let mut buf = [0u8; 4];
        assert_eq!(read_bounded(&mut &b""[..], &mut buf).unwrap(), Some(0));
        assert_eq!(read_bounded(&mut &b"abcd"[..], &mut buf).unwrap(), Some(4));
        assert_eq!(&buf, b"abcd");
        assert_eq!(read_bounded(&mut &b"abcde"[..], &mut buf).unwrap(), None);
    }

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
