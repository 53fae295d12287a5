//! Entra ID (`AZURE_AUTHORITY_HOST`): the v2.0 client-credentials token endpoint for the sandbox
//! service principal, and the discovery documents MSAL-based clients fetch first.

use super::double::{fault_message, with_retry_after, Double, Platform};
use super::json_response;
use super::secret::Secret;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

/// The sandbox service principal (handed out as `SANDBOX_CLIENT_ID` / `SANDBOX_CLIENT_SECRET`).
pub(crate) struct ServicePrincipal {
    /// The application (client) ID.
    pub client_id: String,
    /// The service principal's object ID (what tokens issued to it name).
    pub object_id: String,
    pub secret: Secret,
}

impl ServicePrincipal {
    /// A fresh application ID and client secret.
    pub fn generate() -> Self {
        Self {
            client_id: uuid::Uuid::new_v4().to_string(),
            object_id: uuid::Uuid::new_v4().to_string(),
            secret: Secret::new(super::random_alphanumeric(40)),
        }
    }
}

/// The Entra ID authority of the sandbox tenant, with its one service principal.
pub(crate) struct Authority {
    /// `https://127.0.0.1:<port>` (`AZURE_AUTHORITY_HOST`).
    pub base_url: String,
    pub principal: ServicePrincipal,
}

impl Authority {
    /// An authority served at `base_url` with a fresh service principal.
    pub fn generate(base_url: &str) -> Self {
        Self {
            base_url: base_url.to_string(),
            principal: ServicePrincipal::generate(),
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
    if param("client_secret") != Some(ctx.authority.principal.secret.expose()) {
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
}
