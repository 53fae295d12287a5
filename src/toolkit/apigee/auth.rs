//! Google service-account authentication: a signed JWT assertion exchanged at the key's
//! `token_uri` for a bearer token, cached until shortly before it expires.

use super::config::ServiceAccountKey;
use super::error::parse_error_from;
use crate::azure::http::transport_error;
use crate::azure::retry::{self, Call, Idempotency};
use crate::error::{Error, Result};
use crate::secret::Secret;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// The only scope the Apigee management API needs.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const ASSERTION_LIFETIME_SECS: i64 = 3600;
/// A token this close to expiry is replaced, so a request never starts with a dying token.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
const TOKEN_SERVICE: &str = "Google OAuth token endpoint";

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<u64>,
}

struct CachedToken {
    token: Secret,
    refresh_at: Instant,
}

/// Bearer tokens for one service account, cached per process.
pub struct ServiceAccountAuth {
    http: reqwest::Client,
    client_email: String,
    key_id: Option<String>,
    signing_key: EncodingKey,
    token_uri: url::Url,
    cached: tokio::sync::Mutex<Option<CachedToken>>,
}

impl std::fmt::Debug for ServiceAccountAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountAuth")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri.as_str())
            .finish_non_exhaustive()
    }
}

impl ServiceAccountAuth {
    /// Prepares the signer; fails with a configuration error when the private key is unusable.
    pub fn new(key: &ServiceAccountKey, http: reqwest::Client) -> Result<Self> {
        let signing_key = EncodingKey::from_rsa_pem(key.private_key.expose().as_bytes())
            .map_err(|_| {
                Error::config(
                    "COMPANYDETAILS: issuer.serviceAccountKey.private_key: not an RSA private key in PEM form",
                )
            })?;
        Ok(Self {
            http,
            client_email: key.client_email.clone(),
            key_id: key.private_key_id.clone(),
            signing_key,
            token_uri: key.token_uri.clone(),
            cached: tokio::sync::Mutex::new(None),
        })
    }

    /// A bearer token for [`CLOUD_PLATFORM_SCOPE`], from the cache when it has more than five
    /// minutes left. Concurrent callers wait for one token request instead of each sending one.
    pub async fn token(&self, call: &Call) -> Result<Secret> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| Instant::now() < c.refresh_at) {
            return Ok(c.token.clone());
        }
        let fresh = self.fetch(call).await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// Drops the cached token (after the API refused it).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    fn assertion(&self) -> Result<String> {
        let iat = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.key_id.clone();
        let claims = Claims {
            iss: &self.client_email,
            scope: CLOUD_PLATFORM_SCOPE,
            aud: self.token_uri.as_str(),
            iat,
            exp: iat + ASSERTION_LIFETIME_SECS,
        };
        jsonwebtoken::encode(&header, &claims, &self.signing_key)
            .map_err(|e| Error::config(format!("cannot sign the service-account assertion: {e}")))
    }

    async fn fetch(&self, call: &Call) -> Result<CachedToken> {
        let assertion = self.assertion()?;
        let started = Instant::now();
        // Asking for a token again only gets another token: idempotent.
        let resp = retry::send(call, TOKEN_SERVICE, Idempotency::Idempotent, || async {
            Ok(self
                .http
                .post(self.token_uri.clone())
                .header(reqwest::header::ACCEPT, "application/json")
                .form(&[("grant_type", JWT_BEARER_GRANT), ("assertion", &assertion)]))
        })
        .await?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| transport_error(TOKEN_SERVICE, &e))?;
        if !(200..300).contains(&status) {
            return Err(parse_error_from(TOKEN_SERVICE, status, &body)
                .with_context("service account", self.client_email.clone()));
        }
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            Error::unexpected(format!("{TOKEN_SERVICE}: malformed token response ({e})"))
        })?;
        let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(3600));
        Ok(CachedToken {
            token: Secret::new(parsed.access_token),
            refresh_at: started + lifetime.saturating_sub(REFRESH_MARGIN),
        })
    }
}
