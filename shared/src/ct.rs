//! Constant-time equality, for values whose comparison is an authentication decision: MACs,
//! API-key hashes, secrets. `==` on bytes stops at the first difference, and how long it took
//! tells an attacker how much of a guess was right. The workspace test `pci_38` fails when such
//! a value is compared with `==` anywhere else.

/// Whether `a` and `b` are equal, in time that depends only on their lengths.
pub fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(subtle::ConstantTimeEq::ct_eq(a, b))
}

/// 32 bytes compared in constant time (a SHA-256 of an API key, a MAC). Derefs to the array, so
/// it reads like one; `==` on it is constant time, so structs holding one may derive
/// `PartialEq`.
#[derive(Clone, Copy, Eq)]
pub struct Tag32(pub [u8; 32]);

impl PartialEq for Tag32 {
    fn eq(&self, other: &Self) -> bool {
        bytes_eq(&self.0, &other.0)
    }
}

impl std::ops::Deref for Tag32 {
    type Target = [u8; 32];

    fn deref(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for Tag32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tag32(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_and_hides() {
        assert!(bytes_eq(b"abc", b"abc"));
        assert!(!bytes_eq(b"abc", b"abd"));
        assert!(!bytes_eq(b"abc", b"ab"));
        assert_eq!(Tag32([1; 32]), Tag32([1; 32]));
        assert_ne!(Tag32([1; 32]), Tag32([2; 32]));
        assert_eq!(format!("{:?}", Tag32([7; 32])), "Tag32(..)");
        assert_eq!(Tag32([3; 32]).as_slice(), &[3; 32]);
    }
}
