//! The one HTTP client every outbound call shares (rustls, connection reuse, an optional extra
//! trusted CA for the sandbox or a corporate proxy).

use crate::error::{Error, ErrorKind, Result};
use std::time::Duration;

/// Setting naming a PEM file of extra CA certificates to trust besides the system roots.
pub const TRUSTED_CA_SETTING: &str = "TRUSTED_CA_FILE";

/// Builds the shared client. `extra_ca_pem` is added to the platform's trusted roots.
pub fn build_client(
    extra_ca_pem: Option<&[u8]>,
    request_timeout: Duration,
) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("apikey-rotator/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(request_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = extra_ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
            Error::config(format!(
                "{TRUSTED_CA_SETTING}: not a PEM certificate bundle ({e})"
            ))
        })?;
        if certs.is_empty() {
            return Err(Error::config(format!(
                "{TRUSTED_CA_SETTING}: the file holds no PEM certificate"
            )));
        }
        builder = builder.tls_certs_merge(certs);
    }
    builder.build().map_err(|e| {
        Error::new(
            ErrorKind::Unexpected,
            format!("cannot build the HTTP client: {e}"),
        )
    })
}

/// Maps a transport failure (connect, TLS, timeout) to a temporary [`ErrorKind::Unavailable`].
pub fn transport_error(service: &str, err: &reqwest::Error) -> Error {
    // reqwest's Display includes the URL; URLs never carry keys in this product.
    let what = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut source = String::new();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(err);
    while let Some(s) = cur {
        source = s.to_string();
        cur = s.source();
    }
    let detail = if source.is_empty() {
        err.to_string()
    } else {
        format!("{err}: {source}")
    };
    Error::new(
        ErrorKind::Unavailable,
        format!("{service}: {what}: {detail}"),
    )
    .set_temporary(true)
}

/// An error and its causes, outermost first, each said once (a cause whose text its wrapper
/// already includes is left out).
pub fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let text = e.to_string();
        let text = text.trim();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(text)) {
            parts.push(text.to_string());
        }
        cur = e.source();
    }
    parts.join(": ")
}

/// The kind an HTTP status maps to when the body says nothing more specific.
pub fn kind_for_status(status: u16) -> ErrorKind {
    match status {
        400 | 405 | 413 | 415 | 422 => ErrorKind::InvalidInput,
        401 => ErrorKind::Unauthenticated,
        403 => ErrorKind::PermissionDenied,
        404 | 410 => ErrorKind::NotFound,
        409 | 423 => ErrorKind::Conflict,
        412 => ErrorKind::ConditionNotMatch,
        429 => ErrorKind::RateLimited,
        408 | 500 | 502 | 503 | 504 => ErrorKind::Unavailable,
        _ => ErrorKind::Unexpected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_kinds() {
        assert_eq!(kind_for_status(404), ErrorKind::NotFound);
        assert_eq!(kind_for_status(429), ErrorKind::RateLimited);
        assert_eq!(kind_for_status(503), ErrorKind::Unavailable);
        assert_eq!(kind_for_status(418), ErrorKind::Unexpected);
    }

    #[test]
    fn bad_ca_file_names_the_setting() {
        let e = build_client(Some(b"not a pem"), Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().contains(TRUSTED_CA_SETTING), "{e}");
    }
}
