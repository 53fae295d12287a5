//! The one JSON error every function answers with: `{"error":{"code","message","details"?}}`.

use crate::rotation::RunError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// A function's error answer: a stable code and message for the caller; the details are logged.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: String,
    message: String,
    details: Vec<String>,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
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
        };
        tracing::error!(code, "{e}");
        Self {
            status,
            code: code.to_string(),
            message: message.to_string(),
            details,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}
