//! Shamir shares of the master key: split knowledge for unsealing.
//!
//! [`split`] cuts the 32-byte master key into `n` shares over GF(256) (the `blahaj` crate), any
//! `k` of which rebuild it and fewer of which say nothing about it. Each share is one line of
//! text for one person to keep:
//!
//! ```text
//! vault-share-v1-<set>-<k>of<n>-<index>-<body>-<check>
//! vault-share-v1-3f9a06c1-3of5-2-<64 hex digits>-9b1e04d7
//! ```
//!
//! - `<set>`: 8 hex digits drawn at random for each split. Every share of one split carries it,
//!   so a share from another split (another vault, an older rekey) is refused before combining
//!   instead of silently producing a wrong key.
//! - `<k>of<n>`: the threshold and the number of shares, decimal.
//! - `<index>`: the share's x coordinate, decimal, 1 to `n`.
//! - `<body>`: the share's 32 y bytes, 64 hex digits.
//! - `<check>`: the first 8 hex digits of SHA-256 over everything before `-<check>`, so a
//!   mistyped or damaged share is caught when it is entered, not after `k` people have typed.
//!
//! Shares are read case-insensitively and with surrounding whitespace trimmed; they contain no
//! spaces, so they survive copy and paste.
//!
//! [`Unsealer`] collects shares one at a time (the unseal flow) and combines them when the
//! threshold is reached.
//!
//! **What this module cannot detect.** The checksum catches accidents, not attacks: anyone can
//! recompute it. `k` shares that all parse and belong to one set but were altered combine to a
//! *wrong key* without any error here. The caller must treat the combined key as unverified
//! until it unwraps the vault's stored keys ([`super::CryptoError::WrongMasterKey`] otherwise).
//!
//! Share bytes and keys live only in zeroized buffers. Error messages never contain any part of
//! a share: they say what is wrong and how to fix it, and may be shown or logged as they are.

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::random_bytes;

/// The text every share starts with. The `v1` names this format.
const PREFIX: &str = "vault-share-v1-";
/// The most shares one split makes: more people than this is an organisational problem.
const MAX_SHARES: u8 = 16;
/// The longest share text: prefix, set, `16of16`, index, body, checksum and five dashes.
const MAX_LEN: usize = PREFIX.len() + 8 + 1 + 6 + 1 + 2 + 1 + 64 + 1 + 8;
/// How a share reads, for error messages.
const SHAPE: &str =
    "expected one line vault-share-v1-SET-KofN-INDEX-BODY-CHECK; copy the whole line";

/// What can go wrong splitting, reading or combining shares. Messages never contain share text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShamirError {
    /// The requested threshold or share count is out of range.
    #[error("cannot split the master key: {0}")]
    Parameters(&'static str),
    /// The text is not a vault share (wrong prefix, missing or extra fields, bad digits).
    #[error("not a vault share: {0}")]
    Malformed(&'static str),
    /// The share's checksum does not match: a typo or damage.
    #[error("share checksum does not match: it was mistyped or damaged; enter it again")]
    Checksum,
    /// The share belongs to another split (or threshold) than the shares already entered.
    #[error(
        "this share belongs to another split of the key (another vault or an older rekey); \
         enter a share from the same set as the ones already entered, or start over"
    )]
    OtherSet,
    /// A share with this index was already entered.
    #[error("this share was already entered; enter a share held by someone else")]
    Duplicate,
    /// The OS random number generator failed.
    #[error("the operating system's random number generator failed")]
    Random,
    /// The Shamir library failed in a way the checks here should have made impossible.
    #[error("internal error splitting or combining shares: {0}")]
    Internal(&'static str),
}

/// One share as text for a person to keep. Print it once, to the person who keeps it.
///
/// Deliberately neither `Display` nor `Clone`: a share should not reach a log by accident or
/// linger in copies.
pub struct ShareText(Zeroizing<String>);

impl ShareText {
    /// The share text: one line, no spaces, no trailing newline.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ShareText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShareText(..)")
    }
}

/// A share read by [`parse_share`]: checksum verified, fields in range.
pub struct Share {
    set_id: u32,
    threshold: u8,
    count: u8,
    index: u8,
    // Boxed so moving a `Share` (into an `Unsealer`, through a growing `Vec`) moves a pointer
    // and leaves no unzeroized copy of the bytes behind.
    y: Box<Zeroizing<[u8; 32]>>,
}

impl Share {
    /// The split this share belongs to (random per split; shown as 8 hex digits in the text).
    pub fn set_id(&self) -> u32 {
        self.set_id
    }

    /// How many shares of this split rebuild the key.
    pub fn threshold(&self) -> u8 {
        self.threshold
    }

    /// How many shares this split made.
    pub fn count(&self) -> u8 {
        self.count
    }

    /// This share's number (its x coordinate), 1 to [`Self::count`].
    pub fn index(&self) -> u8 {
        self.index
    }

    fn set(&self) -> SetKey {
        SetKey {
            id: self.set_id,
            threshold: self.threshold,
            count: self.count,
        }
    }
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Share")
            .field("index", &self.index)
            .field("threshold", &self.threshold)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

/// What identifies a split: shares combine only within one.
#[derive(Clone, Copy, PartialEq, Eq)]
struct SetKey {
    id: u32,
    threshold: u8,
    count: u8,
}

/// Splits a 32-byte master key into `shares` shares, any `threshold` of which rebuild it.
///
/// The shares are checked to rebuild the key before they are returned, so a caller may go on to
/// destroy the key's other copies.
///
/// # Errors
///
/// [`ShamirError::Parameters`] unless 2 <= `threshold` <= `shares` <= 16;
/// [`ShamirError::Random`] if the OS random number generator fails.
pub fn split(
    secret: &Zeroizing<[u8; 32]>,
    shares: u8,
    threshold: u8,
) -> Result<Vec<ShareText>, ShamirError> {
    if threshold < 2 {
        return Err(ShamirError::Parameters(
            "the threshold must be at least 2 (with 1, every share is the key)",
        ));
    }
    if threshold > shares {
        return Err(ShamirError::Parameters(
            "the threshold cannot exceed the number of shares",
        ));
    }
    if shares > MAX_SHARES {
        return Err(ShamirError::Parameters("at most 16 shares"));
    }
    let mut set = [0u8; 4];
    random_bytes(&mut set).map_err(|_| ShamirError::Random)?;
    let set_id = u32::from_be_bytes(set);

    let mut out = Vec::with_capacity(usize::from(shares));
    // The dealer's polynomial coefficients are GF256 values that zeroize on drop (blahaj's
    // zeroize_memory feature); its randomness is rand's thread-local CSPRNG, seeded by the OS.
    for part in blahaj::Sharks(threshold)
        .dealer(secret.as_slice())
        .take(usize::from(shares))
    {
        let bytes = Zeroizing::new(Vec::from(&part));
        let (&index, y) = bytes
            .split_first()
            .ok_or(ShamirError::Internal("empty share"))?;
        let y: &[u8; 32] = y
            .try_into()
            .map_err(|_| ShamirError::Internal("share of the wrong length"))?;
        out.push(ShareText(render(set_id, threshold, shares, index, y)));
    }
    if out.len() != usize::from(shares) {
        return Err(ShamirError::Internal("too few shares made"));
    }
    verify(secret, &out, threshold)?;
    Ok(out)
}

/// Reads the first and the last `threshold` shares back through the parser and checks both
/// rebuild `secret`: a bug here must show before the operator destroys the key file.
fn verify(
    secret: &Zeroizing<[u8; 32]>,
    out: &[ShareText],
    threshold: u8,
) -> Result<(), ShamirError> {
    let k = usize::from(threshold);
    for group in [&out[..k], &out[out.len() - k..]] {
        let mut parsed = Vec::with_capacity(k);
        for text in group {
            parsed.push(
                parse_share(text.as_str())
                    .map_err(|_| ShamirError::Internal("a new share does not read back"))?,
            );
        }
        let key = combine(&parsed, threshold)?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            key.as_slice(),
            secret.as_slice(),
        )) {
            return Err(ShamirError::Internal(
                "the new shares do not rebuild the key",
            ));
        }
    }
    Ok(())
}

/// The text of a share, checksum included.
fn render(set_id: u32, threshold: u8, count: u8, index: u8, y: &[u8; 32]) -> Zeroizing<String> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Sized once: a growing String would leave share digits in freed memory.
    let mut text = Zeroizing::new(String::with_capacity(MAX_LEN));
    // Only the non-secret fields go through format!.
    text.push_str(&format!(
        "{PREFIX}{set_id:08x}-{threshold}of{count}-{index}-"
    ));
    for byte in y {
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    let check = checksum(&text);
    text.push('-');
    text.push_str(&hex::encode(check));
    text
}

/// The first four bytes of SHA-256 over a share's text before `-<check>`.
fn checksum(text: &str) -> [u8; 4] {
    let digest = Sha256::digest(text.as_bytes());
    [digest[0], digest[1], digest[2], digest[3]]
}

/// Reads a share typed or pasted by a person. Surrounding whitespace is trimmed and case is
/// ignored.
///
/// # Errors
///
/// [`ShamirError::Malformed`] if the text is not shaped like a share (empty, wrong prefix,
/// truncated, bad digits, out-of-range numbers); [`ShamirError::Checksum`] if it is shaped like
/// one but was mistyped or damaged.
pub fn parse_share(text: &str) -> Result<Share, ShamirError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ShamirError::Malformed(
            "nothing was entered; paste one share line starting vault-share-v1-",
        ));
    }
    if text.len() > MAX_LEN {
        return Err(ShamirError::Malformed(
            "too long to be one share; enter exactly one share line",
        ));
    }
    let lower = Zeroizing::new(text.to_ascii_lowercase());
    let rest = lower.strip_prefix(PREFIX).ok_or(ShamirError::Malformed(
        "expected text starting vault-share-v1-",
    ))?;
    let mut fields = rest.split('-');
    let (Some(set), Some(k_of_n), Some(index), Some(body), Some(check), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(ShamirError::Malformed(SHAPE));
    };

    let set_id = fixed_hex::<4>(set)
        .map(u32::from_be_bytes)
        .ok_or(ShamirError::Malformed(
            "the set (after vault-share-v1-) must be 8 hex digits",
        ))?;
    let (threshold, count) = k_of_n
        .split_once("of")
        .and_then(|(k, n)| Some((small_decimal(k)?, small_decimal(n)?)))
        .ok_or(ShamirError::Malformed(
            "the field after the set must read like 3of5",
        ))?;
    let index = small_decimal(index).ok_or(ShamirError::Malformed(
        "the share number (after KofN) must be a number from 1 to 16",
    ))?;
    let mut y = Box::new(Zeroizing::new([0u8; 32]));
    if body.len() != 64 || hex::decode_to_slice(body, y.as_mut_slice()).is_err() {
        return Err(ShamirError::Malformed(
            "the share body must be 64 hex digits; copy the whole line",
        ));
    }
    let check = fixed_hex::<4>(check).ok_or(ShamirError::Malformed(
        "the checksum at the end must be 8 hex digits; copy the whole line",
    ))?;
    // Everything before "-<check>"; the fields above are strict, so this is the canonical text.
    let signed = &lower[..lower.len() - check.len() * 2 - 1];
    if checksum(signed) != check {
        return Err(ShamirError::Checksum);
    }
    // Checked after the checksum: a typo reads as a typo, and only a share with a valid
    // checksum but impossible numbers (not made by `split`) lands here.
    if threshold < 2 || threshold > count || count > MAX_SHARES || index == 0 || index > count {
        return Err(ShamirError::Malformed(
            "its threshold, count or number is out of range; it was not made by this vault",
        ));
    }
    Ok(Share {
        set_id,
        threshold,
        count,
        index,
        y,
    })
}

/// Exactly `2 * N` hex digits (no sign, no prefix) as bytes.
fn fixed_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// One or two decimal digits without a sign or leading zero, so each number has one spelling
/// and the checksum covers exactly what `split` wrote.
fn small_decimal(text: &str) -> Option<u8> {
    let ok = matches!(text.len(), 1 | 2)
        && text.bytes().all(|b| b.is_ascii_digit())
        && !(text.len() == 2 && text.starts_with('0'));
    if ok { text.parse().ok() } else { None }
}

/// Rebuilds the key from exactly `threshold` distinct shares of one set.
fn combine(held: &[Share], threshold: u8) -> Result<Zeroizing<[u8; 32]>, ShamirError> {
    let mut parts = Vec::with_capacity(held.len());
    for share in held {
        let mut bytes = Zeroizing::new([0u8; 33]);
        bytes[0] = share.index;
        bytes[1..].copy_from_slice(share.y.as_slice());
        // blahaj's shares zeroize their bytes on drop.
        parts.push(
            blahaj::Share::try_from(&bytes[..])
                .map_err(|_| ShamirError::Internal("share rejected by the Shamir library"))?,
        );
    }
    let secret =
        Zeroizing::new(blahaj::Sharks(threshold).recover(&parts).map_err(|_| {
            ShamirError::Internal("the Shamir library could not combine the shares")
        })?);
    let mut key = Zeroizing::new([0u8; 32]);
    if secret.len() != key.len() {
        return Err(ShamirError::Internal("combined key of the wrong length"));
    }
    key.copy_from_slice(&secret);
    Ok(key)
}

/// Where an unseal stands after a share is added.
pub enum Progress {
    /// More shares are needed.
    Need {
        /// Shares held so far.
        held: u8,
        /// Shares needed in all.
        threshold: u8,
    },
    /// The threshold was reached: the combined key. Unverified: it is the right key only if it
    /// unwraps the vault's stored keys (see the module documentation).
    Complete(Zeroizing<[u8; 32]>),
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Need { held, threshold } => f
                .debug_struct("Need")
                .field("held", held)
                .field("threshold", threshold)
                .finish(),
            Self::Complete(_) => f.write_str("Complete(..)"),
        }
    }
}

/// Collects shares typed in one at a time (the unseal flow) until the threshold is reached.
///
/// Dropping it zeroizes the shares it holds.
#[derive(Default)]
pub struct Unsealer {
    set: Option<SetKey>,
    held: Vec<Share>,
}

impl Unsealer {
    /// An unsealer holding no shares.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a share. The first share fixes the set and threshold; a later share of another set
    /// or threshold is refused without dropping the ones held. When the threshold is reached,
    /// combines, clears everything held, and returns [`Progress::Complete`].
    ///
    /// # Errors
    ///
    /// [`ShamirError::OtherSet`] for a share of another split; [`ShamirError::Duplicate`] for an
    /// index already held (both keep the shares held); [`ShamirError::Internal`] if combining
    /// fails (the shares held are then cleared).
    pub fn add(&mut self, share: Share) -> Result<Progress, ShamirError> {
        let set = share.set();
        if self.set.is_some_and(|held| held != set) {
            return Err(ShamirError::OtherSet);
        }
        if self.held.iter().any(|held| held.index == share.index) {
            return Err(ShamirError::Duplicate);
        }
        self.set = Some(set);
        self.held.push(share);
        // At most 16 shares are held: one per index of a set, and a set has at most 16.
        let held = u8::try_from(self.held.len()).unwrap_or(u8::MAX);
        if held < set.threshold {
            return Ok(Progress::Need {
                held,
                threshold: set.threshold,
            });
        }
        let key = combine(&self.held, set.threshold);
        self.reset();
        key.map(Progress::Complete)
    }

    /// How many shares are held.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// The threshold fixed by the first share held, if any.
    pub fn threshold(&self) -> Option<u8> {
        self.set.map(|set| set.threshold)
    }

    /// Forgets every share held (zeroized).
    pub fn reset(&mut self) {
        // Each share's bytes zeroize as it drops.
        self.held.clear();
        self.set = None;
    }
}

impl std::fmt::Debug for Unsealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unsealer")
            .field("held", &self.held.len())
            .field("threshold", &self.threshold())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Zeroizing<[u8; 32]> {
        let mut key = Zeroizing::new([0u8; 32]);
        random_bytes(key.as_mut_slice()).unwrap();
        key
    }

    /// The fields of a share text: set, KofN, index, body, check.
    fn fields(text: &str) -> Vec<String> {
        text.strip_prefix(PREFIX)
            .unwrap()
            .split('-')
            .map(str::to_owned)
            .collect()
    }

    /// Recomputes the checksum as the format documents it (independently of `checksum`), the
    /// way an attacker altering a share would.
    fn rechecksum(text: &str) -> String {
        let (signed, _) = text.rsplit_once('-').unwrap();
        let digest = Sha256::digest(signed.as_bytes());
        format!("{signed}-{}", hex::encode(&digest[..4]))
    }

    /// `text` with field `field` (0 = set .. 4 = check) replaced.
    fn with_field(text: &str, field: usize, value: &str) -> String {
        let mut parts = fields(text);
        parts[field] = value.to_owned();
        format!("{PREFIX}{}", parts.join("-"))
    }

    /// Flips one hex digit of `digits` at `at` to another hex digit.
    fn flip_digit(digits: &str, at: usize) -> String {
        let mut bytes = digits.as_bytes().to_vec();
        bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
        String::from_utf8(bytes).unwrap()
    }

    fn has_hex_run(msg: &str, len: usize) -> bool {
        let mut run = 0;
        for c in msg.chars() {
            run = if c.is_ascii_hexdigit() { run + 1 } else { 0 };
            if run >= len {
                return true;
            }
        }
        false
    }

    fn unseal(texts: &[&str]) -> Result<Progress, ShamirError> {
        let mut unsealer = Unsealer::new();
        let mut last = None;
        for text in texts {
            last = Some(unsealer.add(parse_share(text)?)?);
        }
        Ok(last.unwrap())
    }

    fn complete(progress: Progress) -> Zeroizing<[u8; 32]> {
        match progress {
            Progress::Complete(key) => key,
            Progress::Need { .. } => panic!("expected Complete, got {progress:?}"),
        }
    }

    #[test]
    fn every_three_of_five_rebuild_and_two_do_not() {
        let key = secret();
        let shares = split(&key, 5, 3).unwrap();
        assert_eq!(shares.len(), 5);
        let mut subsets = 0;
        for a in 0..5 {
            for b in a + 1..5 {
                for c in b + 1..5 {
                    let mut unsealer = Unsealer::new();
                    let first = unsealer.add(parse_share(shares[a].as_str()).unwrap());
                    assert!(matches!(
                        first.unwrap(),
                        Progress::Need {
                            held: 1,
                            threshold: 3
                        }
                    ));
                    let second = unsealer.add(parse_share(shares[b].as_str()).unwrap());
                    assert!(matches!(
                        second.unwrap(),
                        Progress::Need {
                            held: 2,
                            threshold: 3
                        }
                    ));
                    assert_eq!(unsealer.held(), 2);
                    let third = unsealer.add(parse_share(shares[c].as_str()).unwrap());
                    assert_eq!(*complete(third.unwrap()), *key, "shares {a} {b} {c}");
                    subsets += 1;
                }
            }
        }
        assert_eq!(subsets, 10);
    }

    #[test]
    fn bad_parameters_are_refused() {
        let key = secret();
        for (shares, threshold) in [(5, 1), (1, 1), (0, 0), (3, 4), (17, 3), (17, 17), (255, 2)] {
            assert!(
                matches!(
                    split(&key, shares, threshold),
                    Err(ShamirError::Parameters(_))
                ),
                "{threshold} of {shares}"
            );
        }
        // The limits themselves are allowed.
        for (shares, threshold) in [(2, 2), (16, 16), (16, 2)] {
            let texts = split(&key, shares, threshold).unwrap();
            assert_eq!(texts.len(), usize::from(shares));
            let last: Vec<&str> = texts[texts.len() - usize::from(threshold)..]
                .iter()
                .map(ShareText::as_str)
                .collect();
            assert_eq!(*complete(unseal(&last).unwrap()), *key);
        }
    }

    #[test]
    fn duplicate_index_is_refused_and_held_shares_kept() {
        let key = secret();
        let shares = split(&key, 5, 3).unwrap();
        let mut unsealer = Unsealer::new();
        unsealer
            .add(parse_share(shares[0].as_str()).unwrap())
            .unwrap();
        unsealer
            .add(parse_share(shares[1].as_str()).unwrap())
            .unwrap();
        let again = unsealer.add(parse_share(shares[1].as_str()).unwrap());
        assert!(matches!(again, Err(ShamirError::Duplicate)));
        assert_eq!(unsealer.held(), 2);
        let done = unsealer.add(parse_share(shares[4].as_str()).unwrap());
        assert_eq!(*complete(done.unwrap()), *key);
        assert_eq!(unsealer.held(), 0);
        assert_eq!(unsealer.threshold(), None);
    }

    #[test]
    fn share_of_another_split_is_refused_and_held_shares_kept() {
        let key = secret();
        let current = split(&key, 5, 3).unwrap();
        // The same key split again (a rekey of the shares): same key, different set.
        let older = split(&key, 5, 3).unwrap();
        let mut unsealer = Unsealer::new();
        unsealer
            .add(parse_share(current[0].as_str()).unwrap())
            .unwrap();
        let other = unsealer.add(parse_share(older[1].as_str()).unwrap());
        assert!(matches!(other, Err(ShamirError::OtherSet)));
        assert_eq!(unsealer.held(), 1);
        assert_eq!(unsealer.threshold(), Some(3));

        // Same set id, another threshold (crafted, valid checksum): also another split.
        let crafted = rechecksum(&with_field(current[2].as_str(), 1, "2of5"));
        let other = unsealer.add(parse_share(&crafted).unwrap());
        assert!(matches!(other, Err(ShamirError::OtherSet)));
        assert_eq!(unsealer.held(), 1);

        unsealer
            .add(parse_share(current[2].as_str()).unwrap())
            .unwrap();
        let done = unsealer.add(parse_share(current[3].as_str()).unwrap());
        assert_eq!(*complete(done.unwrap()), *key);
        assert_eq!(unsealer.held(), 0);
    }

    #[test]
    fn reset_forgets_every_share() {
        let key = secret();
        let shares = split(&key, 3, 2).unwrap();
        let mut unsealer = Unsealer::new();
        unsealer
            .add(parse_share(shares[0].as_str()).unwrap())
            .unwrap();
        unsealer.reset();
        assert_eq!(unsealer.held(), 0);
        assert_eq!(unsealer.threshold(), None);
        // After a reset a share of any set is the first again.
        let other = split(&key, 3, 2).unwrap();
        let progress = unsealer.add(parse_share(other[0].as_str()).unwrap());
        assert!(matches!(
            progress.unwrap(),
            Progress::Need {
                held: 1,
                threshold: 2
            }
        ));
    }

    #[test]
    fn changed_digit_is_a_checksum_error() {
        let key = secret();
        let shares = split(&key, 5, 3).unwrap();
        let text = shares[2].as_str();
        let parts = fields(text);
        for at in [0, 17, 63] {
            let altered = with_field(text, 3, &flip_digit(&parts[3], at));
            assert!(matches!(parse_share(&altered), Err(ShamirError::Checksum)));
        }
        let altered = with_field(text, 0, &flip_digit(&parts[0], 5));
        assert!(matches!(parse_share(&altered), Err(ShamirError::Checksum)));
        let altered = with_field(text, 2, "4");
        assert!(matches!(parse_share(&altered), Err(ShamirError::Checksum)));
        let altered = with_field(text, 4, &flip_digit(&parts[4], 7));
        assert!(matches!(parse_share(&altered), Err(ShamirError::Checksum)));
    }

    #[test]
    fn malformed_text_is_refused() {
        let key = secret();
        let shares = split(&key, 5, 3).unwrap();
        let text = shares[0].as_str();
        let parts = fields(text);
        let bad = [
            String::new(),
            "   \n".to_owned(),
            "hello".to_owned(),
            text[..text.len() - 1].to_owned(),
            text[..text.len() - 9].to_owned(),
            text[..text.len() / 2].to_owned(),
            text.replacen("vault-share-v1-", "vault-share-v2-", 1),
            text.replacen("vault-share-v1-", "", 1),
            format!("{text}-00"),
            format!("{text} {text}"),
            with_field(text, 3, &parts[3][..62]),
            with_field(text, 3, &parts[3].replacen(&parts[3][..1], "g", 1)),
            with_field(text, 0, "+1234567"),
            with_field(text, 1, "3to5"),
            with_field(text, 1, "03of5"),
            with_field(text, 2, "+1"),
        ];
        for input in &bad {
            assert!(
                matches!(parse_share(input), Err(ShamirError::Malformed(_))),
                "case {:?}",
                bad.iter().position(|b| b == input)
            );
        }
        // Valid checksum, impossible numbers: not made by split.
        for (field, value) in [(1, "1of5"), (1, "6of5"), (1, "3of17"), (2, "0"), (2, "6")] {
            let crafted = rechecksum(&with_field(text, field, value));
            assert!(
                matches!(parse_share(&crafted), Err(ShamirError::Malformed(_))),
                "{value}"
            );
        }
    }

    #[test]
    fn error_messages_never_echo_the_share() {
        let key = secret();
        let shares = split(&key, 5, 3).unwrap();
        let text = shares[0].as_str();
        let parts = fields(text);
        let mut errors = vec![
            parse_share(&with_field(text, 3, &flip_digit(&parts[3], 9))).unwrap_err(),
            parse_share(&text[..text.len() - 3]).unwrap_err(),
            parse_share(&text[5..]).unwrap_err(),
            parse_share(&with_field(text, 3, &parts[3][..40])).unwrap_err(),
            parse_share(&with_field(text, 0, &parts[0][..7])).unwrap_err(),
            parse_share(&with_field(text, 4, &parts[4][..7])).unwrap_err(),
            parse_share(&with_field(text, 1, "x")).unwrap_err(),
            parse_share(&with_field(text, 2, "999")).unwrap_err(),
            parse_share(&rechecksum(&with_field(text, 2, "9"))).unwrap_err(),
            parse_share(&format!("{text}{text}")).unwrap_err(),
            parse_share("").unwrap_err(),
            split(&key, 5, 1).unwrap_err(),
            split(&key, 5, 6).unwrap_err(),
            split(&key, 20, 3).unwrap_err(),
        ];
        let mut unsealer = Unsealer::new();
        unsealer.add(parse_share(text).unwrap()).unwrap();
        errors.push(unsealer.add(parse_share(text).unwrap()).unwrap_err());
        let other = split(&key, 5, 3).unwrap();
        errors.push(
            unsealer
                .add(parse_share(other[1].as_str()).unwrap())
                .unwrap_err(),
        );
        assert!(errors.iter().any(|e| matches!(e, ShamirError::Checksum)));
        assert!(errors.iter().any(|e| matches!(e, ShamirError::Duplicate)));
        assert!(errors.iter().any(|e| matches!(e, ShamirError::OtherSet)));
        for error in &errors {
            for msg in [error.to_string(), format!("{error:?}")] {
                // The set, body and checksum; KofN and the index are a digit or two.
                for part in [&parts[0], &parts[3], &parts[4]] {
                    assert!(!msg.contains(part.as_str()), "{msg}");
                }
                assert!(!has_hex_run(&msg, 8), "{msg}");
            }
        }
    }

    #[test]
    fn altered_share_with_valid_checksum_gives_a_wrong_key() {
        let key = secret();
        let shares = split(&key, 5, 3).unwrap();
        let text = shares[1].as_str();
        let parts = fields(text);
        let forged = rechecksum(&with_field(text, 3, &flip_digit(&parts[3], 20)));
        assert_ne!(forged, text);
        let progress = unseal(&[shares[0].as_str(), &forged, shares[4].as_str()]).unwrap();
        assert_ne!(*complete(progress), *key);
    }

    #[test]
    fn debug_shows_no_share_or_key_bytes() {
        let key = secret();
        let shares = split(&key, 3, 2).unwrap();
        let text = shares[0].as_str();
        let parts = fields(text);
        let share = parse_share(text).unwrap();
        let mut unsealer = Unsealer::new();
        unsealer.add(parse_share(text).unwrap()).unwrap();
        assert!(unsealer.add(parse_share(text).unwrap()).is_err());
        let done = unsealer
            .add(parse_share(shares[2].as_str()).unwrap())
            .unwrap();
        let debugs = [
            format!("{:?}", shares[0]),
            format!("{share:?}"),
            format!("{unsealer:?}"),
            format!("{done:?}"),
            format!(
                "{:?}",
                Progress::Need {
                    held: 1,
                    threshold: 2
                }
            ),
        ];
        assert_eq!(debugs[0], "ShareText(..)");
        assert_eq!(debugs[3], "Complete(..)");
        assert_eq!(debugs[4], "Need { held: 1, threshold: 2 }");
        let key_hex = hex::encode(key.as_slice());
        let key_bytes = format!("{:?}", &key[..4]);
        for debug in &debugs {
            for part in [&parts[0], &parts[3], &parts[4]] {
                assert!(!debug.contains(part.as_str()), "{debug}");
            }
            assert!(!has_hex_run(debug, 8), "{debug}");
            assert!(!debug.contains(&key_hex[..8]), "{debug}");
            assert!(
                !debug.contains(&key_bytes[1..key_bytes.len() - 1]),
                "{debug}"
            );
        }
        // A held share shows only in the count.
        let mut holding = Unsealer::new();
        holding.add(parse_share(text).unwrap()).unwrap();
        let debug = format!("{holding:?}");
        assert!(debug.contains("held: 1"), "{debug}");
        assert!(!debug.contains(parts[3].as_str()), "{debug}");
    }

    #[test]
    fn parse_round_trips() {
        let key = secret();
        let shares = split(&key, 5, 3).unwrap();
        let first = parse_share(shares[0].as_str()).unwrap();
        for (i, text) in shares.iter().enumerate() {
            let text = text.as_str();
            assert!(text.starts_with(PREFIX));
            assert!(text.len() <= MAX_LEN);
            assert!(!text.contains(char::is_whitespace));
            // The checksum is the documented one.
            assert_eq!(rechecksum(text), text);
            let share = parse_share(text).unwrap();
            assert_eq!(usize::from(share.index()), i + 1);
            assert_eq!(share.threshold(), 3);
            assert_eq!(share.count(), 5);
            assert_eq!(share.set_id(), first.set_id());
            assert_eq!(format!("{:08x}", share.set_id()), fields(text)[0]);
        }
        // Pasted with whitespace around it, or upper-cased by some tool, still reads.
        let pasted = [
            format!("  {}\r\n", shares[3].as_str()),
            shares[1].as_str().to_ascii_uppercase(),
            format!("\t{}", shares[4].as_str()),
        ];
        let texts: Vec<&str> = pasted.iter().map(String::as_str).collect();
        assert_eq!(*complete(unseal(&texts).unwrap()), *key);
        // Each split has its own set.
        let again = split(&key, 5, 3).unwrap();
        assert_ne!(
            parse_share(again[0].as_str()).unwrap().set_id(),
            first.set_id()
        );
    }
}
