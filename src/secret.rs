//! Redacting holders for API keys and other secrets.
//!
//! A key is shown in full only where it is written to a target or returned by ToolkitApp; every
//! `Debug`/`Display` shows at most its last four characters.

use std::fmt;
use zeroize::Zeroize;

/// An API key. `Debug` and `Display` print `****` plus the last four characters.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The full key, for writing it to a target or to the ToolkitApp response only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `****` plus at most the last four characters (fewer when the key is short).
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }

    /// Lower-case hex SHA-256 of the key, used to compare without revealing it.
    pub fn sha256_hex(&self) -> String {
        sha256_hex(self.0.as_bytes())
    }
}

/// Lower-case hex SHA-256 of `bytes`: a name or fingerprint that reveals nothing of them.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `****` plus at most the last four characters of `value`; keys shorter than 12 characters
/// show only their last two, so that a short secret is never mostly revealed.
pub fn redact(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let shown = if chars.len() >= 12 {
        4
    } else {
        chars.len() / 6
    };
    let tail: String = chars[chars.len() - shown..].iter().collect();
    format!("****{tail}")
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({})", self.redacted())
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Drop for ApiKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// A secret setting value (a client secret, a connection string, a function key).
/// Never printed; `Debug` shows `Secret(****)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, only where it is sent to the service it authenticates to.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_show_only_last_four() {
        let key = ApiKey::new("abcdefghijklmnop9M1x");
        assert_eq!(format!("{key}"), "****9M1x");
        assert_eq!(format!("{key:?}"), "ApiKey(****9M1x)");
        assert!(!format!("{key:?}").contains("abcdefgh"));
    }

    #[test]
    fn short_values_reveal_less() {
        assert_eq!(redact("abc"), "****");
        assert_eq!(redact("abcdefgh"), "****h");
        assert_eq!(redact(""), "****");
    }

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("Endpoint=x;Secret=y");
        assert_eq!(format!("{s:?}"), "Secret(****)");
    }

    #[test]
    fn sha256_is_stable() {
        assert_eq!(
            ApiKey::new("abc").sha256_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
