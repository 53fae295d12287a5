//! ARM error bodies to [`Error`]: the ARM shape `{"error":{"code","message",...}}` and App
//! Service's PascalCase legacy shape `{"Code","Message",...,"Details":[{"ErrorEntity":{...}}]}`.

use crate::azure::http::kind_for_status;
use crate::error::Error;
use serde_json::Value;

/// Maps an ARM error response to an [`Error`] for the resource labelled `what` (`Function App
/// func-orders/staging`): the kind from the status, the code and message from whichever body
/// shape the answer has (the innermost `ErrorEntity` wins in the legacy shape, it is the most
/// specific); an unreadable body still gives the status.
pub fn parse_error(status: u16, body: &[u8], what: &str) -> Error {
    let json: Value = serde_json::from_slice(body).unwrap_or_default();
    let (code, message) = if json["error"].is_object() {
        (
            json["error"]["code"].as_str(),
            json["error"]["message"].as_str(),
        )
    } else {
        let entity = json["Details"]
            .as_array()
            .and_then(|d| d.iter().find_map(|d| d.get("ErrorEntity")))
            .filter(|e| e.is_object());
        let pick = |key: &str| entity.and_then(|e| e[key].as_str()).or(json[key].as_str());
        (pick("Code"), pick("Message"))
    };
    let message = message
        .map(|m| m.lines().next().unwrap_or(m).trim().to_string())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| format!("HTTP {status}"));
    let mut e =
        Error::new(kind_for_status(status), format!("{what}: {message}")).with_status(status);
    if let Some(code) = code.filter(|c| !c.is_empty()) {
        e = e.with_service_code(code);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn reference(file: &str, response: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/reference/azure/arm-web/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        serde_json::to_vec(&doc["responses"][response]["body"]).unwrap()
    }

    /// The ARM front-door shape gives its code and message.
    #[test]
    fn arm_shape_resource_not_found() {
        let e = parse_error(
            404,
            &reference("Error_404_ResourceNotFound_observed.json", "404"),
            "Web App app-x",
        );
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.code(), "ResourceNotFound");
        assert_eq!(e.status(), Some(404));
        assert!(
            e.to_string().starts_with(
                "Web App app-x: The Resource 'Microsoft.Web/sites/test-app-migrationapi'"
            ),
            "{e}"
        );
    }

    /// The App Service legacy PascalCase shape gives the ErrorEntity's code and message.
    #[test]
    fn legacy_shape_not_found() {
        let e = parse_error(
            404,
            &reference("Error_404_AppServiceLegacyShape_observed.json", "404"),
            "Function App f",
        );
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.code(), "NotFound");
        assert_eq!(
            e.to_string(),
            "Function App f: Cannot find User with name 1003BFFDAXXXX."
        );
    }

    /// The throttled legacy body is RateLimited and temporary.
    #[test]
    fn legacy_shape_throttled() {
        let e = parse_error(
            429,
            &reference("Error_429_Throttled_observed.json", "429"),
            "Web App w",
        );
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert!(e.is_temporary());
        // App Service's "429" is no reason; the report's stable code says what to do.
        assert_eq!(e.code(), "TooManyRequests");
        assert!(
            e.to_string().contains("is throttled for subscription"),
            "{e}"
        );
    }

    /// AuthorizationFailed is a permanent PermissionDenied; bodies that are not JSON keep the status.
    #[test]
    fn forbidden_and_unreadable() {
        let body = br#"{"error":{"code":"AuthorizationFailed","message":"The client 'x' with object id 'y' does not have authorization to perform action 'Microsoft.Web/sites/config/list/action' over scope '/subscriptions/s' or the scope is invalid."}}"#;
        let e = parse_error(403, body, "Web App w");
        assert_eq!(
            (e.kind(), e.code(), e.is_temporary()),
            (ErrorKind::PermissionDenied, "AuthorizationFailed", false)
        );
        let e = parse_error(502, b"<html>bad gateway</html>", "Web App w");
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert_eq!(e.to_string(), "Web App w: HTTP 502");
    }
}
