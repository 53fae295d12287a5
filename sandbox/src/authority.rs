//! Entra ID (`AZURE_AUTHORITY_HOST`): the v2.0 client-credentials token endpoint for the sandbox
//! service principal, and the discovery documents MSAL-based clients fetch first.
//!
//! The principal signs in with its client secret, or with a client assertion (workload identity
//! federation): a JWT from an external OIDC issuer whose `iss`, `sub` and `aud` match one of the
//! federated identity credentials on its app registration, signed with the issuer's key, not
//! expired. The sandbox also plays that issuer ([`PipelineIssuer`], under [`ISSUER_PATH`]): the
//! token service of a pipeline (GitHub Actions' `ACTIONS_ID_TOKEN_REQUEST_URL`, an Azure DevOps
//! workload-identity service connection), which hands out a signed ID token for a subject.

use super::double::{fault_message, with_retry_after, Double, Platform};
use super::json_response;
use super::secret::Secret;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

/// Where the sandbox's pipeline OIDC issuer lives on the authority's host: its `iss` is
/// `{authority}{ISSUER_PATH}`, its token endpoint `{authority}{ISSUER_PATH}/token`.
pub(crate) const ISSUER_PATH: &str = "/pipeline-oidc";
/// The audience Entra requires of a federated assertion.
pub(crate) const FEDERATION_AUDIENCE: &str = "api://AzureADTokenExchange";
/// The subject of a GitHub Actions job on `main` of `contoso/rotations` (a federated credential
/// of the sandbox's app registration, and the issuer's default subject).
pub(crate) const GITHUB_SUBJECT: &str = "repo:contoso/rotations:ref:refs/heads/main";
/// The subject of the Azure DevOps service connection `apikey-rotator` in project `rotations`
/// of organization `contoso` (the other federated credential).
pub(crate) const AZURE_DEVOPS_SUBJECT: &str = "sc://contoso/rotations/apikey-rotator";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A federated identity credential of the app registration: the issuer, subject and audiences
/// an assertion must carry (matched case-sensitively, as Entra does).
pub(crate) struct FederatedCredential {
    pub issuer: String,
    pub subject: String,
    pub audiences: Vec<String>,
}

/// The pipeline's OIDC issuer: an RSA key, and the ID tokens it signs.
pub(crate) struct PipelineIssuer {
    /// `iss` of its tokens.
    pub url: String,
    kid: String,
    /// The public key's modulus and exponent, base64url (its JWKS entry).
    n: String,
    e: String,
    encoding_key: EncodingKey,
    decoding_key: DecodingKey,
}

impl PipelineIssuer {
    fn generate(url: String) -> Self {
        use base64::Engine as _;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
            .expect("an RSA key for the pipeline issuer");
        let (n, e) = rsa_components(key.public_key_raw()).expect("a PKCS#1 RSA public key");
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        Self {
            url,
            kid: uuid::Uuid::new_v4().simple().to_string(),
            n: b64(n),
            e: b64(e),
            encoding_key: EncodingKey::from_rsa_pem(key.serialize_pem().as_bytes())
                .expect("the issuer's own PEM"),
            decoding_key: DecodingKey::from_rsa_pem(key.public_key_pem().as_bytes())
                .expect("the issuer's own public PEM"),
        }
    }

    /// An ID token for `subject` and `audience`, valid from now for `lifetime` seconds (negative:
    /// already expired), as a pipeline job gets it.
    pub fn sign(&self, subject: &str, audience: &str, lifetime: i64) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let (iat, exp) = if lifetime < 0 {
            (now + 2 * lifetime, now + lifetime)
        } else {
            (now, now + lifetime)
        };
        let claims = json!({
            "jti": uuid::Uuid::new_v4().to_string(),
            "sub": subject, "aud": audience, "iss": self.url,
            "nbf": iat, "iat": iat, "exp": exp,
        });
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding_key).expect("claims serialise")
    }
}

/// The sandbox service principal (handed out as `SANDBOX_CLIENT_ID` / `SANDBOX_CLIENT_SECRET`).
pub(crate) struct ServicePrincipal {
    /// The application (client) ID.
    pub client_id: String,
    /// The service principal's object ID (what tokens issued to it name).
    pub object_id: String,
    pub secret: Secret,
    /// Its app registration's federated identity credentials.
    pub federated: Vec<FederatedCredential>,
}

impl ServicePrincipal {
    /// A fresh application ID and client secret, trusting `issuer` for the GitHub Actions and
    /// Azure DevOps subjects.
    pub fn generate(issuer: &str) -> Self {
        let federated = [GITHUB_SUBJECT, AZURE_DEVOPS_SUBJECT]
            .into_iter()
            .map(|subject| FederatedCredential {
                issuer: issuer.to_string(),
                subject: subject.to_string(),
                audiences: vec![FEDERATION_AUDIENCE.to_string()],
            })
            .collect();
        Self {
            client_id: uuid::Uuid::new_v4().to_string(),
            object_id: uuid::Uuid::new_v4().to_string(),
            secret: Secret::new(super::random_alphanumeric(40)),
            federated,
        }
    }
}

/// The Entra ID authority of the sandbox tenant, with its one service principal.
pub(crate) struct Authority {
    /// `https://127.0.0.1:<port>` (`AZURE_AUTHORITY_HOST`).
    pub base_url: String,
    pub principal: ServicePrincipal,
    /// The pipeline OIDC issuer the principal's federated credentials trust.
    pub issuer: PipelineIssuer,
}

impl Authority {
    /// An authority served at `base_url` with a fresh service principal and pipeline issuer.
    pub fn generate(base_url: &str) -> Self {
        let issuer = PipelineIssuer::generate(format!("{base_url}{ISSUER_PATH}"));
        Self {
            base_url: base_url.to_string(),
            principal: ServicePrincipal::generate(&issuer.url),
            issuer,
        }
    }
}

impl Double for Authority {
    fn service(&self) -> &'static str {
        "authority"
    }

    /// The authority's routes.
    fn router(self: Arc<Self>, platform: Arc<Platform>) -> Router {
        let ctx = Ctx {
            platform,
            authority: self,
        };
        Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route("/common/discovery/instance", get(discovery))
            .route(&format!("{ISSUER_PATH}/token"), get(pipeline_token))
            .route(
                &format!("{ISSUER_PATH}/.well-known/openid-configuration"),
                get(issuer_configuration),
            )
            .route(&format!("{ISSUER_PATH}/.well-known/jwks"), get(issuer_keys))
            .route(
                "/{tenant}/v2.0/.well-known/openid-configuration",
                get(openid_configuration),
            )
            .with_state(ctx)
    }

    /// An OAuth error body: `temporarily_unavailable` when throttled, `server_error` otherwise.
    fn fault(&self, status: StatusCode, retry_after: Option<u64>) -> Response {
        let error = if status == StatusCode::TOO_MANY_REQUESTS {
            "temporarily_unavailable"
        } else {
            "server_error"
        };
        let body =
            json!({"error": error, "error_description": fault_message(status), "error_codes": []});
        with_retry_after(json_response(status, body), retry_after)
    }
}

#[derive(Clone)]
struct Ctx {
    platform: Arc<Platform>,
    authority: Arc<Authority>,
}

/// An Entra error body (`{"error","error_description","error_codes",...}`).
fn entra_error(status: StatusCode, error: &str, code: u32, description: &str) -> Response {
    let trace_id = uuid::Uuid::new_v4().to_string();
    let timestamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]Z"
        ))
        .unwrap_or_default();
    json_response(
        status,
        json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description} Trace ID: {trace_id} Timestamp: {timestamp}"),
            "error_codes": [code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": uuid::Uuid::new_v4().to_string(),
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        }),
    )
}

async fn token(State(ctx): State<Ctx>, Path(tenant): Path<String>, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let bad = StatusCode::BAD_REQUEST;
    if !tenant.eq_ignore_ascii_case(&ctx.platform.tenant.id) {
        let msg = format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.");
        return entra_error(bad, "invalid_tenant", 90002, &msg);
    }
    let param = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());
    for required in ["grant_type", "client_id", "scope"] {
        if param(required).is_none() {
            let msg =
                format!("The request body must contain the following parameter: '{required}'.");
            return entra_error(bad, "invalid_request", 900144, &msg);
        }
    }
    if param("grant_type") != Some("client_credentials") {
        let msg = "The provided value for the input parameter 'grant_type' is not valid.";
        return entra_error(bad, "unsupported_grant_type", 70003, msg);
    }
    let client_id = param("client_id").unwrap_or_default();
    if !client_id.eq_ignore_ascii_case(&ctx.authority.principal.client_id) {
        let msg = format!(
            "Application with identifier '{client_id}' was not found in the directory '{}'.",
            ctx.platform.tenant.id
        );
        return entra_error(bad, "unauthorized_client", 700016, &msg);
    }
    if param("client_assertion").is_some() || param("client_assertion_type").is_some() {
        if param("client_assertion_type") != Some(ASSERTION_TYPE) {
            let msg =
                "The request body must contain the following parameter: 'client_assertion_type'.";
            return entra_error(bad, "invalid_request", 900144, msg);
        }
        let assertion = param("client_assertion").unwrap_or_default();
        if let Err(refused) = check_assertion(&ctx.authority, assertion) {
            return refused;
        }
    } else if param("client_secret") != Some(ctx.authority.principal.secret.expose()) {
        let msg = format!("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'.");
        return entra_error(StatusCode::UNAUTHORIZED, "invalid_client", 7000215, &msg);
    }
    let scope = param("scope").unwrap_or_default();
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    if scopes.len() != 1 || !scopes[0].ends_with("/.default") {
        let msg = format!("The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid. The client credentials flow needs one scope ending in /.default.");
        return entra_error(bad, "invalid_scope", 1002012, &msg);
    }
    let (access_token, _) = ctx
        .platform
        .tokens
        .issue(scopes[0], &ctx.authority.principal.object_id);
    let mut response = json_response(
        StatusCode::OK,
        json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": access_token}),
    );
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// The modulus and exponent of a PKCS#1 `RSAPublicKey` (`SEQUENCE { INTEGER n, INTEGER e }`,
/// DER), without the sign byte DER puts before a high bit.
fn rsa_components(der: &[u8]) -> Option<(&[u8], &[u8])> {
    /// One DER element of `tag` at the start of `b`: its content and what follows.
    fn element(b: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (&t, rest) = b.split_first()?;
        let (&first, rest) = rest.split_first()?;
        if t != tag {
            return None;
        }
        let (len, rest) = if first < 0x80 {
            (first as usize, rest)
        } else {
            let n = (first & 0x7f) as usize;
            let (len, rest) = (rest.get(..n)?, rest.get(n..)?);
            (len.iter().fold(0usize, |a, b| a << 8 | *b as usize), rest)
        };
        Some((rest.get(..len)?, rest.get(len..)?))
    }
    /// An INTEGER's bytes without the sign byte DER puts before a high bit.
    fn strip(i: &[u8]) -> &[u8] {
        match i {
            [0, rest @ ..] if !rest.is_empty() => rest,
            _ => i,
        }
    }
    let (seq, _) = element(der, 0x30)?;
    let (n, rest) = element(seq, 0x02)?;
    let (e, _) = element(rest, 0x02)?;
    Some((strip(n), strip(e)))
}

/// `GET {ISSUER_PATH}/.well-known/openid-configuration`: the issuer's discovery document, as
/// an OIDC issuer publishes it (GitHub's names the same claims).
async fn issuer_configuration(State(ctx): State<Ctx>) -> Response {
    let issuer = &ctx.authority.issuer.url;
    json_response(
        StatusCode::OK,
        json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/.well-known/jwks"),
            "subject_types_supported": ["public", "pairwise"],
            "response_types_supported": ["id_token"],
            "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti", "nbf"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid"],
        }),
    )
}

/// `GET {ISSUER_PATH}/.well-known/jwks`: the key the issuer signs with.
async fn issuer_keys(State(ctx): State<Ctx>) -> Response {
    let i = &ctx.authority.issuer;
    json_response(
        StatusCode::OK,
        json!({"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": i.kid, "n": i.n, "e": i.e}]}),
    )
}

/// The claims of a federated assertion Entra looks at.
#[derive(serde::Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    aud: String,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
}

/// Checks a federated client assertion as Entra does: an issuer some federated credential
/// names (AADSTS700211), the issuer's signature (AADSTS700027), the time range (AADSTS700024),
/// a credential of that issuer with the subject (AADSTS700213) and the audience (AADSTS70021).
fn check_assertion(authority: &Authority, assertion: &str) -> Result<(), Response> {
    let unauthorized = StatusCode::UNAUTHORIZED;
    let malformed = || {
        entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            50027,
            "JWT token is invalid or malformed.",
        )
    };
    let claims = unverified_claims(assertion).ok_or_else(malformed)?;
    let principal = &authority.principal;
    if !principal.federated.iter().any(|f| f.issuer == claims.iss) {
        let msg = format!("No matching federated identity record found for presented assertion issuer '{}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. https://docs.microsoft.com/en-us/azure/active-directory/develop/workload-identity-federation", claims.iss);
        return Err(entra_error(unauthorized, "invalid_client", 700211, &msg));
    }
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    if jsonwebtoken::decode::<serde_json::Value>(
        assertion,
        &authority.issuer.decoding_key,
        &validation,
    )
    .is_err()
    {
        let msg = format!("Client assertion contains an invalid signature. [Reason - The key was not found., Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{}'.]", principal.client_id);
        return Err(entra_error(unauthorized, "invalid_client", 700027, &msg));
    }
    let now = time::OffsetDateTime::now_utc();
    let nbf = claims.nbf.unwrap_or(0);
    if claims.exp <= now.unix_timestamp() || nbf > now.unix_timestamp() {
        let at = |t: i64| {
            time::OffsetDateTime::from_unix_timestamp(t)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
                .format(time::macros::format_description!(
                    "[year]-[month]-[day]T[hour]:[minute]:[second].0000000Z"
                ))
                .unwrap_or_default()
        };
        let current = now
            .format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:7]Z"
            ))
            .unwrap_or_default();
        let msg = format!("Client assertion is not within its valid time range. Current time: {current}, assertion valid from {}, expiry time of assertion {}. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .", at(nbf), at(claims.exp));
        return Err(entra_error(unauthorized, "invalid_client", 700024, &msg));
    }
    let of_issuer = principal
        .federated
        .iter()
        .filter(|f| f.issuer == claims.iss);
    let Some(credential) = of_issuer.clone().find(|f| f.subject == claims.sub) else {
        let msg = format!("No matching federated identity record found for presented assertion subject '{}'. Check your federated identity credential Subject, Audience and Issuer against the presented assertion. https://learn.microsoft.com/entra/workload-id/workload-identity-federation", claims.sub);
        return Err(entra_error(unauthorized, "invalid_client", 700213, &msg));
    };
    if !credential.audiences.contains(&claims.aud) {
        let msg = format!("No matching federated identity record found for presented assertion. Assertion Issuer: '{}'. Assertion Subject: '{}'. Assertion Audience: '{}'. https://docs.microsoft.com/en-us/azure/active-directory/develop/workload-identity-federation", claims.iss, claims.sub, claims.aud);
        return Err(entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            70021,
            &msg,
        ));
    }
    Ok(())
}

/// The payload of a compact JWS, not verified (to find which issuer's key verifies it).
fn unverified_claims(jwt: &str) -> Option<AssertionClaims> {
    use base64::Engine as _;
    let parts: Vec<&str> = jwt.split('.').collect();
    if parts.len() != 3 {
        return None;
    }
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[1])
        .ok()?;
    serde_json::from_slice(&payload).ok()
}

/// `GET {ISSUER_PATH}/token?audience=...`: the pipeline job's ID token, answered as GitHub's
/// token service answers (`{"value": "<jwt>"}`). The job is played by the query: `subject`
/// (default: [`GITHUB_SUBJECT`]) and `lifetimeSeconds` (default 300; negative: already expired).
async fn pipeline_token(State(ctx): State<Ctx>, uri: axum::http::Uri) -> Response {
    let query = super::query_map(&uri);
    let audience = query
        .get("audience")
        .map(String::as_str)
        .unwrap_or(FEDERATION_AUDIENCE);
    let subject = query
        .get("subject")
        .map(String::as_str)
        .unwrap_or(GITHUB_SUBJECT);
    let lifetime = query
        .get("lifetimeSeconds")
        .and_then(|l| l.parse().ok())
        .unwrap_or(300);
    let token = ctx.authority.issuer.sign(subject, audience, lifetime);
    json_response(StatusCode::OK, json!({"value": token}))
}

async fn discovery(State(ctx): State<Ctx>) -> Response {
    let host = ctx
        .authority
        .base_url
        .trim_start_matches("https://")
        .to_string();
    json_response(
        StatusCode::OK,
        json!({
            "tenant_discovery_endpoint": format!("{}/common/v2.0/.well-known/openid-configuration", ctx.authority.base_url),
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
        }),
    )
}

async fn openid_configuration(State(ctx): State<Ctx>, Path(tenant): Path<String>) -> Response {
    let base = format!("{}/{tenant}", ctx.authority.base_url);
    json_response(
        StatusCode::OK,
        json!({
            "token_endpoint": format!("{base}/oauth2/v2.0/token"),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": format!("{base}/discovery/v2.0/keys"),
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": format!("{base}/v2.0"),
            "authorization_endpoint": format!("{base}/oauth2/v2.0/authorize"),
            "device_authorization_endpoint": format!("{base}/oauth2/v2.0/devicecode"),
            "end_session_endpoint": format!("{base}/oauth2/v2.0/logout"),
            "tenant_region_scope": null,
            "cloud_instance_name": "sandbox",
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::super::test_support::Harness;

    /// The client-credentials grant works for the sandbox principal and answers a bad secret
    /// with Entra's invalid_client body.
    #[tokio::test]
    async fn client_credentials_grant() {
        let h = Harness::start().await;
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            h.env("AZURE_AUTHORITY_HOST"),
            h.env("AZURE_TENANT_ID")
        );
        let form = |secret: String| {
            vec![
                ("grant_type", "client_credentials".to_string()),
                ("client_id", h.env("SANDBOX_CLIENT_ID")),
                ("client_secret", secret),
                ("scope", "https://vault.azure.net/.default".to_string()),
            ]
        };
        let rsp = h
            .client
            .post(&url)
            .form(&form(h.env("SANDBOX_CLIENT_SECRET")))
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 200);
        let body: serde_json::Value = rsp.json().await.unwrap();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3599);
        assert!(body["access_token"].is_string());

        let rsp = h
            .client
            .post(&url)
            .form(&form("nope".into()))
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 401);
        let body: serde_json::Value = rsp.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client");
        assert_eq!(body["error_codes"][0], 7000215);
        assert!(body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS7000215"));

        let doc: serde_json::Value = h
            .client
            .get(format!(
                "{}/{}/v2.0/.well-known/openid-configuration",
                h.env("AZURE_AUTHORITY_HOST"),
                h.env("AZURE_TENANT_ID")
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(doc["token_endpoint"], url.as_str());
        h.sandbox.shutdown().await;
    }

    /// The client-assertion grant takes a token of the pipeline issuer for a federated subject
    /// (both platforms'), and refuses, in Entra's words and codes, an unknown subject, a wrong
    /// audience, an expired token, another issuer, another key's signature and a wrong type.
    #[tokio::test]
    async fn client_assertion_grant_checks_the_federated_credential() {
        use super::*;
        let h = Harness::start().await;
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            h.env("AZURE_AUTHORITY_HOST"),
            h.env("AZURE_TENANT_ID")
        );
        let post = |assertion: String, kind: &'static str| {
            let form = vec![
                ("grant_type", "client_credentials".to_string()),
                ("client_id", h.env("SANDBOX_CLIENT_ID")),
                ("client_assertion_type", kind.to_string()),
                ("client_assertion", assertion),
                ("scope", "https://vault.azure.net/.default".to_string()),
            ];
            let request = h.client.post(&url).form(&form);
            async move {
                let rsp = request.send().await.unwrap();
                let status = rsp.status().as_u16();
                (status, rsp.json::<serde_json::Value>().await.unwrap())
            }
        };
        // The issuer's token endpoint, as a pipeline job calls it.
        let issued: serde_json::Value = h
            .client
            .get(format!(
                "{}{ISSUER_PATH}/token?audience={FEDERATION_AUDIENCE}",
                h.env("AZURE_AUTHORITY_HOST")
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let github = issued["value"].as_str().unwrap().to_string();
        // The issuer's discovery leads to the key that verifies its tokens.
        let base = h.env("AZURE_AUTHORITY_HOST");
        let get_json = |url: String| {
            let request = h.client.get(url);
            async move {
                request
                    .send()
                    .await
                    .unwrap()
                    .json::<serde_json::Value>()
                    .await
                    .unwrap()
            }
        };
        let discovery = get_json(format!(
            "{base}{ISSUER_PATH}/.well-known/openid-configuration"
        ))
        .await;
        assert_eq!(discovery["issuer"], format!("{base}{ISSUER_PATH}"));
        let jwks = get_json(discovery["jwks_uri"].as_str().unwrap().to_string()).await;
        let jwk = &jwks["keys"][0];
        assert_eq!(
            jsonwebtoken::decode_header(&github).unwrap().kid.as_deref(),
            jwk["kid"].as_str()
        );
        let key = DecodingKey::from_rsa_components(
            jwk["n"].as_str().unwrap(),
            jwk["e"].as_str().unwrap(),
        )
        .unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[FEDERATION_AUDIENCE]);
        validation.set_issuer(&[discovery["issuer"].as_str().unwrap()]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(&github, &key, &validation)
            .unwrap()
            .claims;
        assert_eq!(claims["sub"], GITHUB_SUBJECT);
        let (status, body) = post(github.clone(), ASSERTION_TYPE).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["token_type"], "Bearer");
        let issuer = &h.sandbox.cast.authority.issuer;
        let devops = issuer.sign(AZURE_DEVOPS_SUBJECT, FEDERATION_AUDIENCE, 600);
        assert_eq!(post(devops, ASSERTION_TYPE).await.0, 200);

        let refused = |code: u64, status: u16, error: &'static str| {
            move |(s, body): (u16, serde_json::Value)| {
                assert_eq!(s, status, "{body}");
                assert_eq!(body["error"], error, "{body}");
                assert_eq!(body["error_codes"][0], code, "{body}");
                let description = body["error_description"].as_str().unwrap().to_string();
                assert!(
                    description.starts_with(&format!("AADSTS{code}: ")),
                    "{description}"
                );
                description
            }
        };
        let wrong_subject = issuer.sign(
            "repo:contoso/rotations:ref:refs/heads/feature",
            FEDERATION_AUDIENCE,
            300,
        );
        let d = refused(700213, 401, "invalid_client")(post(wrong_subject, ASSERTION_TYPE).await);
        assert!(
            d.contains("'repo:contoso/rotations:ref:refs/heads/feature'"),
            "{d}"
        );
        let wrong_audience = issuer.sign(GITHUB_SUBJECT, "api://SomethingElse", 300);
        let d = refused(70021, 400, "invalid_request")(post(wrong_audience, ASSERTION_TYPE).await);
        assert!(
            d.contains("Assertion Audience: 'api://SomethingElse'"),
            "{d}"
        );
        let expired = issuer.sign(GITHUB_SUBJECT, FEDERATION_AUDIENCE, -60);
        let d = refused(700024, 401, "invalid_client")(post(expired, ASSERTION_TYPE).await);
        assert!(d.contains("not within its valid time range"), "{d}");
        let elsewhere =
            PipelineIssuer::generate("https://token.actions.githubusercontent.com".into());
        let other_issuer = elsewhere.sign(GITHUB_SUBJECT, FEDERATION_AUDIENCE, 300);
        refused(700211, 401, "invalid_client")(post(other_issuer, ASSERTION_TYPE).await);
        let forged = PipelineIssuer::generate(issuer.url.clone());
        let other_key = forged.sign(GITHUB_SUBJECT, FEDERATION_AUDIENCE, 300);
        refused(700027, 401, "invalid_client")(post(other_key, ASSERTION_TYPE).await);
        refused(50027, 400, "invalid_request")(post("not-a-jwt".into(), ASSERTION_TYPE).await);
        refused(900144, 400, "invalid_request")(post(github, "urn:other").await);
        h.sandbox.shutdown().await;
    }
}
