//! Key Vault error bodies (`{"error":{"code","message","innererror":{"code"}}}`) to [`Error`].

use crate::azure::http::{describe, kind_for_status};
use crate::error::{Error, ErrorKind};

/// Maps a Key Vault error response to an [`Error`]: the kind from the status, the code from
/// `innererror.code` when present (it says *why*: `ForbiddenByRbac`, `AccessDenied`), else
/// `error.code`.
pub fn parse_error(status: u16, body: &[u8], vault: &str) -> Error {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let error = &json["error"];
    let code = error["innererror"]["code"]
        .as_str()
        .or(error["code"].as_str());
    let message = error["message"]
        .as_str()
        .map(|m| m.lines().next().unwrap_or(m).trim().to_string())
        .unwrap_or_else(|| format!("HTTP {status}"));
    let mut e = Error::new(
        kind_for_status(status),
        format!("Key Vault {vault}: {message}"),
    )
    .with_status(status);
    if let Some(code) = code {
        e = e.with_service_code(code);
    }
    e
}

/// Maps an error of the official client to an [`Error`].
pub fn from_sdk(err: &azure_core::Error, vault: &str) -> Error {
    use azure_core::error::ErrorKind as Sdk;
    match err.kind() {
        Sdk::HttpResponse {
            status,
            raw_response,
            ..
        } => {
            let body = raw_response
                .as_ref()
                .map(|r| r.body().to_vec())
                .unwrap_or_default();
            parse_error(u16::from(*status), &body, vault)
        }
        // The client wraps the credential's error in its retry policy's words; the token's
        // own failure says what happened and what to do.
        Sdk::Credential => crate::azure::credential::token_error(
            &format!("Key Vault {vault}: cannot get a token"),
            err,
        ),
        Sdk::Connection | Sdk::Io => Error::new(
            ErrorKind::Unavailable,
            format!("Key Vault {vault}: {}", describe(err)),
        )
        .set_temporary(true),
        _ => Error::unexpected(format!("Key Vault {vault}: {}", describe(err))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(file: &str, response: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/reference/azure/keyvault/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        serde_json::to_vec(&doc["responses"][response]["body"]).unwrap()
    }

    #[test]
    fn forbidden_by_rbac_keeps_the_reason() {
        let e = parse_error(
            403,
            &reference("Error_403_Forbidden_observed.json", "403_ForbiddenByRbac"),
            "kv1",
        );
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert_eq!(e.code(), "ForbiddenByRbac");
        assert!(
            e.to_string()
                .starts_with("Key Vault kv1: Caller is not authorized"),
            "{e}"
        );
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn not_found() {
        let e = parse_error(
            404,
            &reference("Error_404_SecretNotFound_recorded.json", "404"),
            "kv1",
        );
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.code(), "SecretNotFound");
    }

    #[test]
    fn unparseable_body_still_gives_status() {
        let e = parse_error(503, b"<html>", "kv1");
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.is_temporary());
        assert_eq!(e.to_string(), "Key Vault kv1: HTTP 503");
    }
}
