//! App Configuration error answers (RFC 7807 problem+json `{"type","title","name","detail","status"}`,
//! or an empty body for 404 and 412) to [`Error`].

use crate::azure::http::kind_for_status;
use crate::error::{Error, ErrorKind};

/// The problem type of a locked key-value.
const KEY_LOCKED: &str = "https://azconfig.io/errors/key-locked";

/// Maps an App Configuration error answer to an [`Error`]: the kind from the status, the code
/// from the problem `type` (`KeyLocked`, `InvalidArgument`, `TooManyRequests`, ...), the message
/// from `title` and `detail` (or the status alone when the body says nothing).
pub fn parse_error(status: u16, body: &[u8], store: &str) -> Error {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let problem_type = json["type"].as_str().unwrap_or("");
    let title = json["title"].as_str().unwrap_or("").trim();
    let detail = json["detail"].as_str().unwrap_or("").trim();
    let message = match (title.is_empty(), detail.is_empty()) {
        (true, true) => match status {
            412 => "HTTP 412: the key-value changed since it was read (ETag mismatch)".to_string(),
            _ => format!("HTTP {status}"),
        },
        (false, true) => title.to_string(),
        (true, false) => detail.to_string(),
        (false, false) => format!("{title}: {detail}"),
    };
    let kind = if problem_type == KEY_LOCKED {
        ErrorKind::Conflict
    } else {
        kind_for_status(status)
    };
    let mut e =
        Error::new(kind, format!("App Configuration {store}: {message}")).with_status(status);
    // The last path segment of the type names the reason: key-locked -> KeyLocked.
    if let Some(reason) = problem_type
        .strip_prefix("https://azconfig.io/errors/")
        .filter(|r| !r.is_empty())
    {
        let code: String = reason
            .split('-')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect();
        e = e.with_service_code(code);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(file: &str, status: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/reference/azure/appconfig/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        match &doc["responses"][status]["body"] {
            serde_json::Value::String(s) => s.as_bytes().to_vec(),
            body => serde_json::to_vec(body).unwrap(),
        }
    }

    #[test]
    fn locked_key_is_a_conflict_with_code_key_locked() {
        let e = parse_error(
            409,
            &reference("Error_409_KeyLocked_recorded.json", "409"),
            "appcs1",
        );
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert_eq!(e.code(), "KeyLocked");
        assert!(!e.is_temporary());
        assert!(
            e.to_string()
                .contains("The key is read-only. To allow modification unlock it first."),
            "{e}"
        );
        assert!(
            e.to_string().starts_with("App Configuration appcs1: "),
            "{e}"
        );
    }

    #[test]
    fn precondition_failed_has_an_empty_body() {
        let body = reference("Error_412_PreconditionFailed_recorded.json", "412");
        assert!(body.is_empty());
        let e = parse_error(412, &body, "appcs1");
        assert_eq!(e.kind(), ErrorKind::ConditionNotMatch);
        assert_eq!(e.code(), "PreconditionFailed");
        assert_eq!(e.status(), Some(412));
    }

    #[test]
    fn throttling_is_temporary() {
        let e = parse_error(
            429,
            &reference("Error_429_TooManyRequests_docs.json", "429"),
            "s",
        );
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert!(e.is_temporary());
        assert_eq!(e.code(), "TooManyRequests");
        assert_eq!(
            e.to_string(),
            "App Configuration s: Resource utilization has surpassed the assigned quota"
        );
    }

    #[test]
    fn invalid_argument() {
        let e = parse_error(
            400,
            &reference("Error_400_InvalidFilter_docs.json", "400"),
            "s",
        );
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(e.code(), "InvalidArgument");
        assert!(e.to_string().contains("Invalid character"), "{e}");
    }

    #[test]
    fn unparseable_body_still_gives_status() {
        let e = parse_error(503, b"<html>", "s");
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.is_temporary());
        assert_eq!(e.to_string(), "App Configuration s: HTTP 503");
        assert_eq!(
            parse_error(401, b"", "s").kind(),
            ErrorKind::Unauthenticated
        );
    }
}
