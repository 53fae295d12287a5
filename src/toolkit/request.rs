//! The ToolkitApp HTTP contract (PRODUCT.md §6) as pure functions: request parsing and the
//! success body. Errors are the domain's ([`ErrorKind::InvalidInput`] for a bad request);
//! `functions::ApiError` turns them into the JSON error answer. The HTTP layer only moves bytes.

use super::KeyGrant;
use crate::error::{Error, ErrorKind, Result};
use serde_json::{json, Value};
use time::OffsetDateTime;

/// A validated ToolkitApp request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolkitRequest {
    /// The API-manager app (trimmed).
    pub app_name: String,
    /// Renew regardless of the renewal window.
    pub force: bool,
    /// Decide without changing anything.
    pub dry_run: bool,
}

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest accepted `appName`, in characters.
pub const MAX_APP_NAME_CHARS: usize = 256;

const EXPECTED: &str =
    r#"expected JSON like {"appName": "<API-manager app name>", "force": false, "dryRun": false}"#;

/// Parses and validates a ToolkitApp body. [`ErrorKind::InvalidInput`] (a 400) when the body is over [`MAX_BODY_BYTES`], not
/// JSON, not an object, lacks `appName`, has an `appName` that is not a non-blank string of at
/// most [`MAX_APP_NAME_CHARS`] characters without control characters, has a non-boolean
/// `force`/`dryRun`, or has any other field.
pub fn parse_request(body: &[u8]) -> Result<ToolkitRequest> {
    let bad = |m: String| Err(Error::new(ErrorKind::InvalidInput, m));
    if body.len() > MAX_BODY_BYTES {
        return bad(format!(
            "body too large: at most 64 KiB ({MAX_BODY_BYTES} bytes) are accepted"
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return bad(format!("body is empty; {EXPECTED}"));
    }
    let value: Value = match crate::json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return bad(format!("body is not JSON ({e}); {EXPECTED}")),
    };
    let Value::Object(fields) = value else {
        return bad(format!("body is not a JSON object; {EXPECTED}"));
    };
    let mut app_name = None;
    let mut force = false;
    let mut dry_run = false;
    for (name, v) in &fields {
        match (name.as_str(), v) {
            ("appName", Value::String(s)) => app_name = Some(s.trim().to_string()),
            ("appName", _) => return bad("appName must be a string".into()),
            ("force", Value::Bool(b)) => force = *b,
            ("dryRun", Value::Bool(b)) => dry_run = *b,
            ("force" | "dryRun", _) => return bad(format!("{name} must be true or false")),
            _ => {
                return bad(format!(
                    "unknown field \"{name}\"; expected appName, force, dryRun"
                ))
            }
        }
    }
    let Some(app_name) = app_name else {
        return bad(format!("appName is required; {EXPECTED}"));
    };
    if app_name.is_empty() {
        return bad("appName must not be empty".into());
    }
    if app_name.chars().count() > MAX_APP_NAME_CHARS {
        return bad(format!(
            "appName is longer than {MAX_APP_NAME_CHARS} characters"
        ));
    }
    if app_name.chars().any(char::is_control) {
        return bad("appName must not contain control characters".into());
    }
    Ok(ToolkitRequest {
        app_name,
        force,
        dry_run,
    })
}

fn rfc3339(t: Option<OffsetDateTime>) -> Value {
    t.map(|t| crate::rfc3339::format(t, crate::rfc3339::Fraction::AsNeeded))
        .map_or(Value::Null, Value::String)
}

/// The success body `{"appName", "apiKey", "issuedAt", "expiresAt", "renewed", "message"}`,
/// times as RFC 3339 strings or null. The one place a key leaves the toolkit in full.
pub fn response_body(grant: &KeyGrant) -> Value {
    json!({
        "appName": grant.app_name,
        "apiKey": grant.api_key.expose(),
        "issuedAt": rfc3339(grant.issued_at),
        "expiresAt": rfc3339(grant.expires_at),
        "renewed": grant.renewed,
        "message": grant.message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::ApiKey;
    use time::macros::datetime;

    fn valid() -> Value {
        json!({ "appName": "APIKeyRotator_TestApp1_Sandbox", "force": true, "dryRun": false })
    }

    fn tweak(f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Vec<u8> {
        let mut v = valid();
        f(v.as_object_mut().unwrap());
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn valid_request() {
        let r = parse_request(&serde_json::to_vec(&valid()).unwrap()).unwrap();
        assert_eq!(
            r,
            ToolkitRequest {
                app_name: "APIKeyRotator_TestApp1_Sandbox".into(),
                force: true,
                dry_run: false
            }
        );
        let r = parse_request(br#"{"appName":"  a  "}"#).unwrap();
        assert_eq!(
            (r.app_name.as_str(), r.force, r.dry_run),
            ("a", false, false)
        );
    }

    #[test]
    fn every_bad_request_is_400_with_a_reason() {
        let long = "x".repeat(MAX_APP_NAME_CHARS + 1);
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "too large",
                vec![b' '; MAX_BODY_BYTES + 1],
                "body too large",
            ),
            ("empty", Vec::new(), "body is empty"),
            ("not JSON", b"appName=x".to_vec(), "body is not JSON"),
            (
                "duplicate key",
                br#"{"appName": "a", "appName": "b"}"#.to_vec(),
                "body is not JSON (appName: duplicate key",
            ),
            ("array", b"[\"x\"]".to_vec(), "not a JSON object"),
            ("string", b"\"x\"".to_vec(), "not a JSON object"),
            ("{}", b"{}".to_vec(), "appName is required"),
            (
                "missing",
                tweak(|o| {
                    o.remove("appName");
                }),
                "appName is required",
            ),
            (
                "number",
                tweak(|o| {
                    o.insert("appName".into(), json!(5));
                }),
                "appName must be a string",
            ),
            (
                "null",
                tweak(|o| {
                    o.insert("appName".into(), Value::Null);
                }),
                "appName must be a string",
            ),
            (
                "blank",
                tweak(|o| {
                    o.insert("appName".into(), json!(" \t "));
                }),
                "must not be empty",
            ),
            (
                "long",
                tweak(|o| {
                    o.insert("appName".into(), json!(long));
                }),
                "longer than 256",
            ),
            (
                "control",
                tweak(|o| {
                    o.insert("appName".into(), json!("a\u{0}b"));
                }),
                "control characters",
            ),
            (
                "unknown",
                tweak(|o| {
                    o.insert("appname".into(), json!("x"));
                }),
                "unknown field \"appname\"",
            ),
            (
                "force",
                tweak(|o| {
                    o.insert("force".into(), json!("yes"));
                }),
                "force must be true or false",
            ),
            (
                "dryRun",
                tweak(|o| {
                    o.insert("dryRun".into(), json!(1));
                }),
                "dryRun must be true or false",
            ),
        ];
        for (name, body, expected) in cases {
            let e = parse_request(&body).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{name}");
            assert!(e.to_string().contains(expected), "{name}: {e}");
        }
        // Exactly 256 characters is still accepted.
        assert!(parse_request(&tweak(|o| {
            o.insert("appName".into(), json!("é".repeat(MAX_APP_NAME_CHARS)));
        }))
        .is_ok());
    }

    #[test]
    fn success_body_has_the_full_key_and_rfc3339_times() {
        let g = KeyGrant {
            app_name: "a1".into(),
            api_key: ApiKey::new("abcdefghijklmnopqrstuvwxyz012345"),
            issued_at: Some(datetime!(2026-11-22 06:00:01.5 UTC)),
            expires_at: None,
            renewed: true,
            message: "Created key ****2345".into(),
        };
        assert_eq!(
            response_body(&g),
            json!({
                "appName": "a1",
                "apiKey": "abcdefghijklmnopqrstuvwxyz012345",
                "issuedAt": "2026-11-22T06:00:01.5Z",
                "expiresAt": null,
                "renewed": true,
                "message": "Created key ****2345"
            })
        );
    }
}
