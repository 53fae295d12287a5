//! The sandbox's own secrets (client secrets, access keys, private keys): never printed.

use std::fmt;
use zeroize::Zeroize;

/// A secret value; `Debug` shows `Secret(****)` and the memory is wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, only where it is checked or handed to the handler.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Lower-case hex SHA-256 of `bytes` (what the application API tells of a stored key).
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debug never shows the value; the hash is SHA-256's published value for "abc".
    #[test]
    fn secrets_are_not_printed_and_hash_is_sha256() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(****)");
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
