//! Bearer tokens the sandbox issued (managed identity, Entra ID, Google OAuth): token to
//! audience and expiry. Every double that requires a token checks it here.

use axum::http::{header, HeaderMap};
use std::collections::HashMap;
use std::sync::Mutex;
use time::{Duration, OffsetDateTime};

/// Lifetime of every token the sandbox issues.
pub(crate) const LIFETIME: Duration = Duration::seconds(3599);

/// Why a request's bearer token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A token the sandbox never issued (or one that expired).
    Unknown,
    /// A token issued for another audience (the audience it was issued for).
    WrongAudience(String),
}

struct Issued {
    audience: String,
    /// The object ID of the principal the token was issued to.
    principal: String,
    expires_at: OffsetDateTime,
}

/// The issued tokens.
#[derive(Default)]
pub(crate) struct TokenStore {
    issued: Mutex<HashMap<String, Issued>>,
}

/// `https://vault.azure.net/.default`, `https://vault.azure.net/` and `https://vault.azure.net`
/// name the same audience.
pub(crate) fn normalize_audience(scope_or_resource: &str) -> String {
    let s = scope_or_resource.trim();
    s.strip_suffix("/.default")
        .unwrap_or(s)
        .trim_end_matches('/')
        .to_string()
}

impl TokenStore {
    /// Issues a new opaque token for `audience` to `principal` (an object ID or a service
    /// account); returns it and its expiry.
    pub fn issue(&self, audience: &str, principal: &str) -> (String, OffsetDateTime) {
        let token = format!("sbx.{}", super::random_alphanumeric(48));
        let expires_at = OffsetDateTime::now_utc() + LIFETIME;
        self.issued.lock().unwrap().insert(
            token.clone(),
            Issued {
                audience: normalize_audience(audience),
                principal: principal.to_string(),
                expires_at,
            },
        );
        (token, expires_at)
    }

    /// Checks the request's `Authorization: Bearer` token against `audience`.
    pub fn check(&self, headers: &HeaderMap, audience: &str) -> Result<(), Refusal> {
        let token = bearer(headers).ok_or(Refusal::Missing)?;
        let issued = self.issued.lock().unwrap();
        let found = issued
            .get(token)
            .filter(|t| t.expires_at > OffsetDateTime::now_utc())
            .ok_or(Refusal::Unknown)?;
        if found.audience != normalize_audience(audience) {
            return Err(Refusal::WrongAudience(found.audience.clone()));
        }
        Ok(())
    }
}

impl TokenStore {
    /// The principal the request's bearer token was issued to, if the sandbox issued it.
    pub fn principal(&self, headers: &HeaderMap) -> Option<String> {
        let token = bearer(headers)?;
        let issued = self.issued.lock().unwrap();
        issued.get(token).map(|t| t.principal.clone())
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        h
    }

    /// A token is accepted only for the audience it was issued for, however that is spelled.
    #[test]
    fn tokens_are_bound_to_their_audience() {
        let store = TokenStore::default();
        let (token, _) = store.issue("https://vault.azure.net/.default", "oid-1");
        assert_eq!(
            store.check(&with_bearer(&token), "https://vault.azure.net/"),
            Ok(())
        );
        assert_eq!(
            store.check(&with_bearer(&token), "https://management.azure.com"),
            Err(Refusal::WrongAudience("https://vault.azure.net".into()))
        );
        assert_eq!(
            store.check(&with_bearer("forged"), "https://vault.azure.net"),
            Err(Refusal::Unknown)
        );
        assert_eq!(
            store.check(&HeaderMap::new(), "https://vault.azure.net"),
            Err(Refusal::Missing)
        );
        assert_eq!(
            store.principal(&with_bearer(&token)).as_deref(),
            Some("oid-1")
        );
        assert_eq!(store.principal(&with_bearer("forged")), None);
    }
}
