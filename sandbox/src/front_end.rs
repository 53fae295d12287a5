//! What the services' front ends refuse before a request reaches the service: the one place
//! every double's HTTP framing rules live ([`super::log::observe`] applies them to every
//! double, before authentication, faults and the service's own handlers).
//!
//! Throttling sits here too ([`throttle`]): a request over its service's published limit is
//! answered 429 by the front door, before authentication and faults (see [`super::limits`]).
//!
//! The framing rule is `411 Length Required` for a `POST`, `PUT` or `PATCH` that carries neither
//! `Content-Length` nor `Transfer-Encoding: chunked`. Azure's front ends (Resource Manager, Key
//! Vault, App Configuration, App Service sites, Entra ID) run on HTTP.sys, which answers with its
//! fixed HTML page; Google's front end (Apigee's management API and its OAuth token endpoint)
//! answers with its own page naming the missing header (public reports: reqwest #838,
//! azure-sdk-for-rust #166, the GFE's "POST requests require a Content-length header").

use super::double::Double;
use super::limits::{Limit, Limiter, Verdict};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Version};
use axum::response::{IntoResponse, Response};

/// What the front door does with a request as far as the published limits go.
pub(crate) enum Throttle {
    /// No limit applies (or throttling is off).
    Free,
    /// Admitted: `limit`'s bucket has `remaining` tokens left (for the remaining-quota
    /// headers of the answer).
    Admitted { limit: Limit, remaining: u64 },
    /// Refused with the service's 429.
    Refused(Response),
}

/// Takes a token for `method path` from the bucket `double` names, if it names one.
pub(crate) fn throttle(
    limits: &Limiter,
    double: &dyn Double,
    method: &Method,
    path: &str,
) -> Throttle {
    if !limits.enabled() {
        return Throttle::Free;
    }
    let Some(limit) = double.limit(method, path) else {
        return Throttle::Free;
    };
    match limits.take(double.service(), &limit) {
        None => Throttle::Free,
        Some(Verdict::Admitted { remaining }) => Throttle::Admitted { limit, remaining },
        Some(Verdict::Throttled { retry_after }) => {
            Throttle::Refused(double.throttled(&limit, retry_after))
        }
    }
}

/// HTTP.sys's answer to an unframed body (344 bytes, `text/html; charset=us-ascii`).
const HTTP_SYS_411: &str = "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.01//EN\"\"http://www.w3.org/TR/html4/strict.dtd\">\r\n\
<HTML><HEAD><TITLE>Length Required</TITLE>\r\n\
<META HTTP-EQUIV=\"Content-Type\" Content=\"text/html; charset=us-ascii\"></HEAD>\r\n\
<BODY><h2>Length Required</h2>\r\n\
<hr><p>HTTP Error 411. The request must be chunked or have a content length.</p>\r\n\
</BODY></HTML>\r\n";

/// Which front end a double's service sits behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrontEnd {
    /// HTTP.sys / IIS, in front of every Azure service.
    Azure,
    /// Google's front end (GFE), in front of `*.googleapis.com`.
    Google,
}

/// Whether a request's body is framed the way HTTP/1.1 front ends insist on: a method that
/// carries a body has `Content-Length` or chunked `Transfer-Encoding`. HTTP/2 frames bodies
/// itself, and other methods need no body.
pub(crate) fn body_is_framed(method: &Method, version: Version, headers: &HeaderMap) -> bool {
    if version >= Version::HTTP_2 || !matches!(*method, Method::POST | Method::PUT | Method::PATCH)
    {
        return true;
    }
    let chunked = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("chunked"));
    chunked || headers.contains_key(header::CONTENT_LENGTH)
}

/// `front_end`'s refusal of a request, if it refuses it.
pub(crate) fn refusal(
    front_end: FrontEnd,
    method: &Method,
    version: Version,
    headers: &HeaderMap,
) -> Option<Response> {
    if body_is_framed(method, version, headers) {
        return None;
    }
    Some(length_required(front_end, method))
}

/// `411 Length Required` as `front_end` sends it; the connection is closed after it, as both
/// front ends do (the unframed body, if any, cannot be skipped).
pub(crate) fn length_required(front_end: FrontEnd, method: &Method) -> Response {
    let (content_type, body) = match front_end {
        FrontEnd::Azure => ("text/html; charset=us-ascii", HTTP_SYS_411.to_string()),
        FrontEnd::Google => ("text/html; charset=UTF-8", google_411(method)),
    };
    let mut response = (StatusCode::LENGTH_REQUIRED, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    if front_end == FrontEnd::Azure {
        headers.insert(
            header::SERVER,
            HeaderValue::from_static("Microsoft-HTTPAPI/2.0"),
        );
    }
    response
}

/// The GFE's error page for 411 (its style sheet and logo left out).
fn google_411(method: &Method) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  \
         <meta name=viewport content=\"initial-scale=1, minimum-scale=1, width=device-width\">\n  \
         <title>Error 411 (Length Required)!!1</title>\n  \
         <p><b>411.</b> <ins>That\u{2019}s an error.</ins>\n  \
         <p>{method} requests require a <code>Content-length</code> header.  \
         <ins>That\u{2019}s all we know.</ins>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    /// Methods with a body need a length or chunking on HTTP/1.1; the others, and HTTP/2, do not.
    #[test]
    fn which_requests_are_refused() {
        let v11 = Version::HTTP_11;
        for m in [Method::POST, Method::PUT, Method::PATCH] {
            assert!(!body_is_framed(&m, v11, &headers(&[])), "{m}");
            assert!(body_is_framed(
                &m,
                v11,
                &headers(&[("content-length", "0")])
            ));
            assert!(body_is_framed(
                &m,
                v11,
                &headers(&[("transfer-encoding", "gzip, chunked")])
            ));
            assert!(body_is_framed(&m, Version::HTTP_2, &headers(&[])));
        }
        for m in [Method::GET, Method::DELETE, Method::HEAD] {
            assert!(body_is_framed(&m, v11, &headers(&[])), "{m}");
        }
    }

    /// Each front end answers with its own page; HTTP.sys's is byte for byte its 344 bytes.
    #[test]
    fn refusal_bodies_are_the_front_ends() {
        assert_eq!(HTTP_SYS_411.len(), 344);
        let azure = length_required(FrontEnd::Azure, &Method::POST);
        assert_eq!(azure.status(), StatusCode::LENGTH_REQUIRED);
        assert_eq!(azure.headers()["server"], "Microsoft-HTTPAPI/2.0");
        let google = length_required(FrontEnd::Google, &Method::POST);
        assert_eq!(google.headers()["content-type"], "text/html; charset=UTF-8");
        assert!(!google.headers().contains_key("server"));
        assert!(google_411(&Method::POST).contains("POST requests require a <code>Content-length"));
        let azure = FrontEnd::Azure;
        assert!(refusal(azure, &Method::GET, Version::HTTP_11, &headers(&[])).is_none());
        assert!(refusal(azure, &Method::PUT, Version::HTTP_11, &headers(&[])).is_some());
    }
}
