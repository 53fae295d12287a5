//! The one JSON error every function answers with: `{"error":{"code","message","details"?}}`,
//! built from the domain error ([`From<Error>`](ApiError#impl-From<Error>-for-ApiError)), from a
//! run that could not start ([`RunError`]), or for what the HTTP layer itself refuses.

use crate::error::{Error, ErrorKind};
use crate::rotation::RunError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// A function's error answer: a stable code and message for the caller; the details are logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    code: String,
    message: String,
    details: Vec<String>,
    /// Seconds to wait before asking again, sent as `Retry-After`.
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
            details: Vec::new(),
            retry_after: None,
        }
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code (`BadRequest`, `AppNotFound`, ...).
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The message for the caller; never contains a key.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The `Retry-After` seconds, if the answer asks the caller to wait.
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        let mut error = serde_json::json!({ "code": self.code, "message": self.message });
        if !self.details.is_empty() {
            error["details"] = serde_json::json!(self.details);
        }
        serde_json::json!({ "error": error })
    }
}

/// The HTTP contract of PRODUCT.md §6: [`ErrorKind::InvalidInput`] is 400 `BadRequest`,
/// [`ErrorKind::NotFound`] 404 `AppNotFound`, [`ErrorKind::ConfigInvalid`] 500
/// `ConfigurationError`, the toolkit's own limit on forced renewals
/// ([`crate::toolkit::FORCE_LIMITED_CODE`]) 429 `TooManyRequests` with `Retry-After`, and
/// every other kind 502 `ApiManagerError`: the API manager (or the way to it) failed, whatever
/// it said; a passed deadline too. The message is the error with its context.
impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let (status, code) = match e.kind() {
            // A limit of the toolkit's own, not the API manager's throttling (which is a 502).
            ErrorKind::RateLimited if e.code() == crate::toolkit::FORCE_LIMITED_CODE => {
                (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests")
            }
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "AppNotFound"),
            ErrorKind::InvalidInput => (StatusCode::BAD_REQUEST, "BadRequest"),
            ErrorKind::ConfigInvalid => (StatusCode::INTERNAL_SERVER_ERROR, "ConfigurationError"),
            _ => (StatusCode::BAD_GATEWAY, "ApiManagerError"),
        };
        let mut answer = Self::new(status, code, e.to_string());
        if status == StatusCode::TOO_MANY_REQUESTS {
            answer.retry_after = e.retry_after().map(|d| d.as_secs().max(1));
        }
        answer
    }
}

impl From<RunError> for ApiError {
    fn from(e: RunError) -> Self {
        let (status, code, message, details) = match &e {
            RunError::Settings(p) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "InvalidSettings",
                "The function app's settings are missing or invalid.",
                p.iter().map(ToString::to_string).collect(),
            ),
            RunError::Mapping(m) => (
                StatusCode::BAD_REQUEST,
                "InvalidMapping",
                "The apps mapping (APIKEYROTATIONAPPS) is invalid.",
                m.0.iter()
                    .map(|e| format!("{}: {}: {}", e.setting, e.path, e.message))
                    .collect(),
            ),
            RunError::BadRequest(m) => (
                StatusCode::BAD_REQUEST,
                "BadRequest",
                m.as_str(),
                Vec::new(),
            ),
            RunError::Setup(err) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                err.code(),
                "The run could not start.",
                vec![err.to_string()],
            ),
            RunError::InProgress(m) => (
                StatusCode::CONFLICT,
                "RunInProgress",
                m.as_str(),
                Vec::new(),
            ),
            RunError::UnknownApp(m) => {
                (StatusCode::NOT_FOUND, "AppNotFound", m.as_str(), Vec::new())
            }
        };
        tracing::error!(code, "{e}");
        Self {
            status,
            code: code.to_string(),
            message: message.to_string(),
            details,
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_map_to_status_and_code() {
        let cases = [
            (ErrorKind::NotFound, 404, "AppNotFound"),
            (ErrorKind::InvalidInput, 400, "BadRequest"),
            (ErrorKind::ConfigInvalid, 500, "ConfigurationError"),
            (ErrorKind::Unavailable, 502, "ApiManagerError"),
            (ErrorKind::PermissionDenied, 502, "ApiManagerError"),
            (ErrorKind::Unauthenticated, 502, "ApiManagerError"),
            // The API manager's throttling, after the retries: it failed.
            (ErrorKind::RateLimited, 502, "ApiManagerError"),
        ];
        for (kind, status, code) in cases {
            let a = ApiError::from(Error::new(kind, "boom").with_context("app", "a1"));
            assert_eq!((a.status().as_u16(), a.code()), (status, code));
            assert_eq!(
                a.body(),
                json!({ "error": { "code": code, "message": "boom (app: a1)" } })
            );
            assert_eq!(a.retry_after(), None);
        }
        // A passed deadline is the API manager not answering in time, as before.
        let a = ApiError::from(crate::error::Error::deadline_exceeded("Apigee"));
        assert_eq!((a.status().as_u16(), a.code()), (502, "ApiManagerError"));
    }

    /// The toolkit's own limit is a 429 with the wait, as a header.
    #[test]
    fn a_forced_renewal_too_soon_is_429_with_retry_after() {
        let e = Error::new(ErrorKind::RateLimited, "too soon")
            .with_code(crate::toolkit::FORCE_LIMITED_CODE)
            .with_retry_after(Some(std::time::Duration::from_millis(1500)));
        let a = ApiError::from(e);
        assert_eq!((a.status().as_u16(), a.code()), (429, "TooManyRequests"));
        assert_eq!(a.retry_after(), Some(1));
        let response = a.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let plain = ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", "x").into_response();
        assert!(plain.headers().get(header::RETRY_AFTER).is_none());
    }
}
