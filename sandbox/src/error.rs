//! The sandbox's one error: something it needs (a port, a file, a key) could not be had.

use std::fmt;

/// Why the sandbox could not start.
#[derive(Debug)]
pub struct Error(String);

impl Error {
    /// An error saying `message` (it never quotes a secret).
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sandbox: {}", self.0)
    }
}

impl std::error::Error for Error {}

/// A result whose error is the sandbox's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
