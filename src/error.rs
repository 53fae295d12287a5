//! The domain error: a kind, a temporary flag that drives retries, a stable code, and context.
//!
//! Every adapter maps the responses of its service to this type in one `parse_error`, so the
//! engine and the report speak one vocabulary whatever the backend.

use std::fmt;
use std::time::Duration;

/// What went wrong, independent of the service that said it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum ErrorKind {
    /// A setting, the mapping or the sealed details are missing or malformed.
    ConfigInvalid,
    /// The caller's request is malformed.
    InvalidInput,
    /// The named resource does not exist.
    NotFound,
    /// Authentication failed (no or bad credentials, token refused).
    Unauthenticated,
    /// Authenticated, but not allowed.
    PermissionDenied,
    /// The service throttled the request.
    RateLimited,
    /// A precondition (ETag) did not hold.
    ConditionNotMatch,
    /// The resource is locked or in a conflicting state.
    Conflict,
    /// The service is unreachable or answered with a server error.
    Unavailable,
    /// The run's (or the request's) deadline passed before the work finished. Final: the next
    /// run starts over with a deadline of its own. Reported, answered and logged as a service
    /// being unavailable (a 503 where an HTTP status is due), with the code `DeadlineExceeded`.
    DeadlineExceeded,
    /// Anything else, including malformed answers.
    Unexpected,
}

impl ErrorKind {
    /// Stable code used in reports and JSON errors when the service gave none.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::ConfigInvalid => "ConfigInvalid",
            ErrorKind::InvalidInput => "InvalidInput",
            ErrorKind::NotFound => "NotFound",
            ErrorKind::Unauthenticated => "Unauthenticated",
            ErrorKind::PermissionDenied => "Forbidden",
            ErrorKind::RateLimited => "TooManyRequests",
            ErrorKind::ConditionNotMatch => "PreconditionFailed",
            ErrorKind::Conflict => "Conflict",
            ErrorKind::Unavailable => "ServiceUnavailable",
            ErrorKind::DeadlineExceeded => "DeadlineExceeded",
            ErrorKind::Unexpected => "Unexpected",
        }
    }
}

/// The project's error type. Its message never contains a key (see [`crate::secret`]).
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    code: Option<String>,
    status: Option<u16>,
    temporary: bool,
    retry_after: Option<Duration>,
    context: Vec<(&'static str, String)>,
}

/// Result with the project's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind`; temporary when the kind usually is (throttling, unavailability).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            code: None,
            status: None,
            temporary: matches!(kind, ErrorKind::RateLimited | ErrorKind::Unavailable),
            retry_after: None,
            context: Vec::new(),
        }
    }

    /// Shorthand for a [`ErrorKind::ConfigInvalid`] error.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ConfigInvalid, message)
    }

    /// The error of work (`what`) abandoned at the run's deadline: [`ErrorKind::DeadlineExceeded`],
    /// not temporary (repeating it within the same run cannot help).
    pub fn deadline_exceeded(what: &str) -> Self {
        Self::new(
            ErrorKind::DeadlineExceeded,
            format!("{what}: the run's deadline passed before it finished"),
        )
    }

    /// Shorthand for an [`ErrorKind::Unexpected`] error.
    pub fn unexpected(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unexpected, message)
    }

    /// Sets the service's own error code (`SecretNotFound`, `ForbiddenByRbac`, ...).
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Sets the service's own code when it says why a request was refused for good
    /// (`ForbiddenByRbac`, `KeyLocked`, `PERMISSION_DENIED`). A throttled or unavailable service
    /// keeps the stable `TooManyRequests` / `ServiceUnavailable` whatever it calls itself
    /// (`Throttled`, `UNAVAILABLE`, `InternalError`): after the retries the remedy is the same,
    /// and one table of codes (README "Failure handling") reads every report. The service's
    /// words stay in the message.
    pub fn with_service_code(self, code: impl Into<String>) -> Self {
        match self.kind {
            ErrorKind::RateLimited | ErrorKind::Unavailable => self,
            _ => self.with_code(code),
        }
    }

    /// Records the wait the service asked for (`Retry-After`), for callers that retry on
    /// their own terms (a request that may not be repeated blindly).
    pub fn with_retry_after(mut self, wait: Option<Duration>) -> Self {
        self.retry_after = wait;
        self
    }

    /// The wait the service asked for, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Records the HTTP status the service answered with.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// Overrides whether retrying may succeed.
    pub fn set_temporary(mut self, temporary: bool) -> Self {
        self.temporary = temporary;
        self
    }

    /// Adds a context pair (`("vault", "kv-prd")`), shown after the message.
    pub fn with_context(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.context.push((key, value.into()));
        self
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The service's code if it gave one, otherwise the kind's stable code.
    pub fn code(&self) -> &str {
        self.code.as_deref().unwrap_or(self.kind.code())
    }

    /// The HTTP status, when the error came from a response.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// Whether retrying the same request may succeed.
    pub fn is_temporary(&self) -> bool {
        self.temporary
    }

    /// The message without context.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if !self.context.is_empty() {
            f.write_str(" (")?;
            for (i, (k, v)) in self.context.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{k}: {v}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_includes_context_and_code_falls_back_to_kind() {
        let e = Error::new(ErrorKind::NotFound, "secret missing").with_context("vault", "kv1");
        assert_eq!(e.to_string(), "secret missing (vault: kv1)");
        assert_eq!(e.code(), "NotFound");
        assert!(!e.is_temporary());
        let e = e.with_code("SecretNotFound");
        assert_eq!(e.code(), "SecretNotFound");
    }

    /// A passed deadline is its own kind, with the code reports have always shown, and final.
    #[test]
    fn a_passed_deadline_is_a_kind_of_its_own() {
        let e = Error::deadline_exceeded("Key Vault kv1");
        assert_eq!(e.kind(), ErrorKind::DeadlineExceeded);
        assert_eq!(e.code(), "DeadlineExceeded");
        assert!(!e.is_temporary());
        assert_eq!(
            e.to_string(),
            "Key Vault kv1: the run's deadline passed before it finished"
        );
    }

    #[test]
    fn throttling_is_temporary() {
        assert!(Error::new(ErrorKind::RateLimited, "slow down").is_temporary());
    }

    /// A service's code names a final refusal; throttling and unavailability keep the stable
    /// codes of the report's table.
    #[test]
    fn service_codes_name_refusals_not_outages() {
        let refused =
            Error::new(ErrorKind::PermissionDenied, "no").with_service_code("ForbiddenByRbac");
        assert_eq!(refused.code(), "ForbiddenByRbac");
        let down = Error::new(ErrorKind::Unavailable, "down").with_service_code("UNAVAILABLE");
        assert_eq!(down.code(), "ServiceUnavailable");
        let throttled = Error::new(ErrorKind::RateLimited, "slow").with_service_code("Throttled");
        assert_eq!(throttled.code(), "TooManyRequests");
    }
}
