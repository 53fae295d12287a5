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

/// Gives a request whose method carries a body an explicit `Content-Length` when nothing frames
/// its body yet. hyper sends a bodiless (or empty-bodied) `POST`/`PUT`/`PATCH` with neither
/// `Content-Length` nor `Transfer-Encoding`, and the front ends of Resource Manager, Storage and
/// Google APIs answer that with `411 Length Required` before they look at anything else (an
/// app-settings list, `?action=approve`); azure-sdk-for-rust's transport does the same for this
/// reason. Every hand-written call goes through [`crate::azure::retry::send`], which calls this.
pub fn ensure_content_length(request: &mut reqwest::Request) {
    use reqwest::header::{HeaderValue, CONTENT_LENGTH, TRANSFER_ENCODING};
    use reqwest::Method;
    if !matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH
    ) || request.headers().contains_key(CONTENT_LENGTH)
        || request.headers().contains_key(TRANSFER_ENCODING)
    {
        return;
    }
    let length = match request.body() {
        None => {
            *request.body_mut() = Some(reqwest::Body::from(Vec::<u8>::new()));
            0
        }
        Some(body) => match body.as_bytes() {
            Some(bytes) => bytes.len(),
            // A streamed body is chunked by hyper: framed already.
            None => return,
        },
    };
    request
        .headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(length));
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

    /// Bodiless and empty-bodied POST/PUT/PATCH get `Content-Length: 0`; a JSON body keeps its
    /// length; GET and DELETE are left alone.
    #[test]
    fn every_body_method_gets_a_content_length() {
        let client = reqwest::Client::new();
        let url = "https://127.0.0.1:1/x";
        let length = |r: &reqwest::Request| {
            r.headers()
                .get("content-length")
                .map(|v| v.to_str().unwrap().to_string())
        };
        for method in [
            reqwest::Method::POST,
            reqwest::Method::PUT,
            reqwest::Method::PATCH,
        ] {
            let mut bare = client.request(method.clone(), url).build().unwrap();
            ensure_content_length(&mut bare);
            assert_eq!(length(&bare).as_deref(), Some("0"), "{method}");
            assert_eq!(bare.body().and_then(|b| b.as_bytes()), Some(&b""[..]));
            let mut empty = client
                .request(method.clone(), url)
                .body(Vec::new())
                .build()
                .unwrap();
            ensure_content_length(&mut empty);
            assert_eq!(length(&empty).as_deref(), Some("0"), "{method}");
            let mut json = client
                .request(method.clone(), url)
                .body("{\"a\":1}")
                .build()
                .unwrap();
            ensure_content_length(&mut json);
            assert_eq!(length(&json).as_deref(), Some("7"), "{method}");
        }
        for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
            let mut r = client.request(method, url).build().unwrap();
            ensure_content_length(&mut r);
            assert_eq!(length(&r), None);
        }
    }

    #[test]
    fn bad_ca_file_names_the_setting() {
        let e = build_client(Some(b"not a pem"), Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().contains(TRUSTED_CA_SETTING), "{e}");
    }
}
