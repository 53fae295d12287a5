//! Interim ToolkitApp request types (replaced by the toolkit work).
use super::KeyGrant;
use crate::error::Error;
/// Request.
#[derive(Debug)]
pub struct ToolkitRequest {
    /// App.
    pub app_name: String,
    /// Force.
    pub force: bool,
    /// Dry run.
    pub dry_run: bool,
}
/// Max body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Parse.
pub fn parse_request(body: &[u8]) -> Result<ToolkitRequest, ToolkitError> {
    let _ = body;
    Err(ToolkitError {
        status: 400,
        code: "BadRequest".into(),
        message: "interim".into(),
    })
}
/// Error.
#[derive(Debug)]
pub struct ToolkitError {
    /// Status.
    pub status: u16,
    /// Code.
    pub code: String,
    /// Message.
    pub message: String,
}
impl ToolkitError {
    /// From.
    pub fn from_error(e: &Error) -> Self {
        Self {
            status: 500,
            code: e.code().into(),
            message: e.to_string(),
        }
    }
    /// Body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code, "message": self.message}})
    }
}
/// Response.
pub fn response_body(grant: &KeyGrant) -> serde_json::Value {
    serde_json::json!({"appName": grant.app_name})
}
