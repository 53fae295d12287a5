//! Maps Apigee management API and Google OAuth error responses to the domain error.

use crate::error::{Error, ErrorKind};
use serde_json::Value;

/// Maps an error response to [`Error`]. Understands Google API errors
/// (`{"error":{"code","message","status"}}`) and OAuth token errors
/// (`{"error","error_description"}`); anything else is described by its status.
pub fn parse_error(status: u16, body: &[u8]) -> Error {
    parse_error_from("Apigee", status, body)
}

/// [`parse_error`] naming another service (the OAuth token endpoint) in the message.
pub(crate) fn parse_error_from(service: &str, status: u16, body: &[u8]) -> Error {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let (code, detail) = match json.as_ref().and_then(|v| v.get("error")) {
        Some(Value::Object(e)) => (
            e.get("status").and_then(Value::as_str).map(str::to_string),
            e.get("message").and_then(Value::as_str).map(str::to_string),
        ),
        Some(Value::String(code)) => (
            Some(code.clone()),
            json.as_ref()
                .and_then(|v| v.get("error_description"))
                .and_then(Value::as_str)
                .map(str::to_string),
        ),
        _ => (None, None),
    };
    let token_auth_failure = matches!(
        code.as_deref(),
        Some("invalid_grant" | "invalid_client" | "unauthorized_client")
    );
    let kind = match status {
        _ if token_auth_failure => ErrorKind::Unauthenticated,
        401 => ErrorKind::Unauthenticated,
        403 => ErrorKind::PermissionDenied,
        404 => ErrorKind::NotFound,
        409 => ErrorKind::Conflict,
        429 => ErrorKind::RateLimited,
        500..=599 => ErrorKind::Unavailable,
        _ => ErrorKind::Unexpected,
    };
    let detail = detail.unwrap_or_else(|| {
        if body.is_empty() {
            "no details".to_string()
        } else {
            // Proxies answer with HTML; a short prefix helps without flooding the report.
            let text = String::from_utf8_lossy(body);
            let snippet: String = text.chars().take(200).collect();
            format!("unexpected body: {}", snippet.trim())
        }
    });
    let head = match &code {
        Some(c) => format!("{service} answered {status} {c}"),
        None => format!("{service} answered {status}"),
    };
    let mut err = Error::new(kind, format!("{head}: {detail}")).with_status(status);
    if let Some(code) = code {
        err = err.with_service_code(code);
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    // Google API error bodies as documented in Google's AIP-193 error model, and Google OAuth
    // token endpoint errors (RFC 6749 §5.2 shape) as the token endpoint sends them.
    const NOT_FOUND: &str = r#"{"error":{"code":404,"message":"DeveloperApp with developerId 659525a4-212b-4f46-ad6f-02d9d33ed69b and name hungrybird02 not found","status":"NOT_FOUND"}}"#;
    const DENIED: &str = r#"{"error":{"code":403,"message":"Permission 'apigee.developerapps.get' denied on resource 'organizations/contoso-prd' (or it may not exist).","status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"IAM_PERMISSION_DENIED"}]}}"#;
    const UNAUTH: &str = r#"{"error":{"code":401,"message":"Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.","status":"UNAUTHENTICATED"}}"#;
    const QUOTA: &str = r#"{"error":{"code":429,"message":"Quota exceeded for quota metric 'Apigee API requests'.","status":"RESOURCE_EXHAUSTED"}}"#;
    const UNAVAILABLE: &str = r#"{"error":{"code":503,"message":"The service is currently unavailable.","status":"UNAVAILABLE"}}"#;
    const BAD_ARG: &str = r#"{"error":{"code":400,"message":"Invalid consumer key format","status":"INVALID_ARGUMENT"}}"#;
    const INVALID_GRANT: &str =
        r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#;

    #[test]
    fn google_errors_map_to_kinds() {
        let cases: [(u16, &str, ErrorKind, &str, bool); 6] = [
            (404, NOT_FOUND, ErrorKind::NotFound, "NOT_FOUND", false),
            (
                403,
                DENIED,
                ErrorKind::PermissionDenied,
                "PERMISSION_DENIED",
                false,
            ),
            (
                401,
                UNAUTH,
                ErrorKind::Unauthenticated,
                "UNAUTHENTICATED",
                false,
            ),
            (
                429,
                QUOTA,
                ErrorKind::RateLimited,
                // The report's stable code; Google's status stays in the message.
                "TooManyRequests",
                true,
            ),
            (
                503,
                UNAVAILABLE,
                ErrorKind::Unavailable,
                "ServiceUnavailable",
                true,
            ),
            (
                400,
                BAD_ARG,
                ErrorKind::Unexpected,
                "INVALID_ARGUMENT",
                false,
            ),
        ];
        for (status, body, kind, code, temporary) in cases {
            let e = parse_error(status, body.as_bytes());
            assert_eq!(e.kind(), kind, "{status}");
            assert_eq!(e.code(), code);
            assert_eq!(e.status(), Some(status));
            assert_eq!(e.is_temporary(), temporary, "{status}");
        }
        let e = parse_error(403, DENIED.as_bytes());
        assert!(e.message().starts_with("Apigee answered 403 PERMISSION_DENIED: Permission 'apigee.developerapps.get' denied"), "{e}");
    }

    #[test]
    fn token_errors_are_authentication_failures() {
        let e = parse_error(400, INVALID_GRANT.as_bytes());
        assert_eq!(e.kind(), ErrorKind::Unauthenticated);
        assert_eq!(e.code(), "invalid_grant");
        assert_eq!(
            e.message(),
            "Apigee answered 400 invalid_grant: Invalid JWT Signature."
        );
    }

    #[test]
    fn bodies_that_are_not_google_errors() {
        let e = parse_error(502, b"<html><body>Bad Gateway</body></html>");
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.is_temporary());
        assert!(e.message().contains("unexpected body: <html>"), "{e}");
        let e = parse_error(418, b"");
        assert_eq!(e.kind(), ErrorKind::Unexpected);
        assert_eq!(e.message(), "Apigee answered 418: no details");
    }
}
