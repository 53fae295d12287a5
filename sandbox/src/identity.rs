//! The App Service managed-identity endpoint (`IDENTITY_ENDPOINT`, protocol 2019-08-01), the
//! way `azure_identity`'s `ManagedIdentityCredential` calls it: `GET ?resource=&api-version=`
//! with `X-IDENTITY-HEADER`.

use super::double::{fault_message, with_retry_after, Double, Platform};
use super::{json_response, query_map};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::json;
use std::sync::Arc;

/// Path of the token endpoint (the docs use `/MSI/token`; both spellings are served).
pub(crate) const PATH: &str = "/msi/token";
const API_VERSIONS: [&str; 1] = ["2019-08-01"];

/// The sandbox function app's identity (both system- and user-assigned requests resolve to it).
pub(crate) struct ManagedIdentity {
    /// `http://127.0.0.1:<port>` (App Service's endpoint is plain http on loopback too).
    pub base_url: String,
    pub client_id: String,
    pub principal_id: String,
    pub resource_id: String,
    /// The `IDENTITY_HEADER` secret App Service gives the process.
    pub header: String,
}

impl ManagedIdentity {
    /// A fresh identity and header secret, served at `base_url`.
    pub fn generate(base_url: &str) -> Self {
        Self {
            base_url: base_url.to_string(),
            client_id: uuid::Uuid::new_v4().to_string(),
            principal_id: uuid::Uuid::new_v4().to_string(),
            resource_id: format!(
                "/subscriptions/{}/resourcegroups/rg-keyrotator-sandbox/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-keyrotator-sandbox",
                uuid::Uuid::new_v4()
            ),
            header: uuid::Uuid::new_v4().to_string(),
        }
    }
}

impl Double for ManagedIdentity {
    fn service(&self) -> &'static str {
        "identity"
    }

    /// The identity endpoint's routes.
    fn router(self: Arc<Self>, platform: Arc<Platform>) -> Router {
        let ctx = Ctx {
            platform,
            identity: self,
        };
        Router::new()
            .route(PATH, get(token))
            .route("/MSI/token", get(token))
            .with_state(ctx)
    }

    /// The endpoint's own error shape, `{"statusCode", "message"}`.
    fn fault(&self, status: StatusCode, retry_after: Option<u64>) -> Response {
        let body = json!({"statusCode": status.as_u16(), "message": fault_message(status)});
        with_retry_after(json_response(status, body), retry_after)
    }
}

#[derive(Clone)]
struct Ctx {
    platform: Arc<Platform>,
    identity: Arc<ManagedIdentity>,
}

fn error(status: StatusCode, message: &str) -> Response {
    json_response(
        status,
        json!({"statusCode": status.as_u16(), "message": message, "correlationId": uuid::Uuid::new_v4().to_string()}),
    )
}

async fn token(State(ctx): State<Ctx>, request: Request) -> Response {
    let id = &ctx.identity;
    let header_ok = request
        .headers()
        .get("x-identity-header")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == id.header);
    if !header_ok {
        return error(
            StatusCode::UNAUTHORIZED,
            "The request is missing the X-IDENTITY-HEADER header or its value is invalid.",
        );
    }
    let query = query_map(request.uri());
    match query.get("api-version") {
        None => {
            return error(
                StatusCode::BAD_REQUEST,
                "The api-version query parameter is required.",
            )
        }
        Some(v) if !API_VERSIONS.contains(&v.as_str()) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("The api-version '{v}' is not supported; use 2019-08-01."),
            )
        }
        Some(_) => {}
    }
    let Some(resource) = query.get("resource").filter(|r| !r.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "The resource query parameter is required.",
        );
    };
    let wanted = [
        ("client_id", &id.client_id),
        ("object_id", &id.principal_id),
        ("principal_id", &id.principal_id),
        ("msi_res_id", &id.resource_id),
        ("mi_res_id", &id.resource_id),
    ];
    let unknown_identity = wanted.iter().any(|(param, expected)| {
        query
            .get(*param)
            .is_some_and(|given| !given.eq_ignore_ascii_case(expected))
    });
    if unknown_identity {
        return error(
            StatusCode::BAD_REQUEST,
            "Unable to load the proper Managed Identity.",
        );
    }
    let (access_token, expires_at) = ctx.platform.tokens.issue(resource, &id.principal_id);
    json_response(
        StatusCode::OK,
        json!({
            "access_token": access_token,
            "expires_on": expires_at.unix_timestamp().to_string(),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": id.client_id,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::super::test_support::Harness;

    /// A token is issued only with the right X-IDENTITY-HEADER, api-version and identity.
    #[tokio::test]
    async fn token_needs_the_identity_header() {
        let h = Harness::start().await;
        let url = h.env("IDENTITY_ENDPOINT");
        let query = [
            ("resource", "https://vault.azure.net"),
            ("api-version", "2019-08-01"),
        ];
        let rsp = h.client.get(&url).query(&query).send().await.unwrap();
        assert_eq!(rsp.status(), 401);
        let rsp = h
            .client
            .get(&url)
            .query(&query)
            .header("X-IDENTITY-HEADER", "wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 401);
        let rsp = h
            .client
            .get(&url)
            .query(&[("resource", "https://vault.azure.net")])
            .header("X-IDENTITY-HEADER", h.env("IDENTITY_HEADER"))
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 400);
        let rsp = h
            .client
            .get(&url)
            .query(&query)
            .query(&[("client_id", "00000000-0000-0000-0000-000000000000")])
            .header("X-IDENTITY-HEADER", h.env("IDENTITY_HEADER"))
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 400);
        let body: serde_json::Value = rsp.json().await.unwrap();
        assert_eq!(
            body["message"],
            "Unable to load the proper Managed Identity."
        );

        let rsp = h
            .client
            .get(&url)
            .query(&query)
            .header("x-identity-header", h.env("IDENTITY_HEADER"))
            .header("metadata", "true")
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 200);
        let body: serde_json::Value = rsp.json().await.unwrap();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["resource"], "https://vault.azure.net");
        let expires_on: i64 = body["expires_on"].as_str().unwrap().parse().unwrap();
        assert!(expires_on > time::OffsetDateTime::now_utc().unix_timestamp());
        assert!(body["access_token"].as_str().unwrap().len() > 20);
        h.sandbox.shutdown().await;
    }

    /// The official `ManagedIdentityCredential` (App Service source) gets a token from the
    /// endpoint. It reads IDENTITY_ENDPOINT/IDENTITY_HEADER from the process environment, so it
    /// runs in a child process rather than changing this one's environment.
    #[tokio::test]
    async fn official_managed_identity_credential_works() {
        let h = Harness::start().await;
        // Async, so that this runtime keeps serving the child's requests while it waits.
        let status = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "identity::tests::managed_identity_child",
                "--exact",
                "--ignored",
                "--quiet",
            ])
            .env("IDENTITY_ENDPOINT", h.env("IDENTITY_ENDPOINT"))
            .env("IDENTITY_HEADER", h.env("IDENTITY_HEADER"))
            .env("SANDBOX_MI_CHILD", "1")
            .stdout(std::process::Stdio::null())
            .status()
            .await
            .unwrap();
        assert!(status.success());
        let log = h.requests().await;
        assert_eq!(log.len(), 1);
        assert_eq!(log[0]["service"], "identity");
        assert_eq!(log[0]["status"], 200);
        assert!(log[0]["query"]
            .as_str()
            .unwrap()
            .contains("resource=https%3A%2F%2Fvault.azure.net"));
        h.sandbox.shutdown().await;
    }

    /// Child half of the test above (only meaningful with its environment).
    #[tokio::test]
    #[ignore = "run by official_managed_identity_credential_works in a child process"]
    async fn managed_identity_child() {
        use azure_core::credentials::TokenCredential;
        if std::env::var("SANDBOX_MI_CHILD").is_err() {
            return;
        }
        let credential = azure_identity::ManagedIdentityCredential::new(None).unwrap();
        let token = credential
            .get_token(&["https://vault.azure.net/.default"], None)
            .await
            .unwrap();
        assert!(token.expires_on > time::OffsetDateTime::now_utc());
    }
}
