//! Azure Resource Manager: for now every authenticated request answers ARM's 404
//! `ResourceNotFound`; the Microsoft.Web app-settings operations come later.

use super::tokens::Refusal;
use super::{json_response, query_map, Shared};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Router;
use serde_json::json;
use std::sync::Arc;

/// The token audience ARM requires.
const AUDIENCE: &str = "https://management.azure.com";

/// ARM's routes (a fallback for now).
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

fn arm_error(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(status, json!({"error": {"code": code, "message": message}}))
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    if let Err(refusal) = shared.tokens.check(request.headers(), AUDIENCE) {
        let (code, message, description) = match refusal {
            Refusal::Missing => (
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
                "The authentication failed because of missing 'Authorization' header.",
            ),
            _ => (
                "InvalidAuthenticationToken",
                "The access token is invalid.",
                "The access token is invalid.",
            ),
        };
        let mut response = arm_error(StatusCode::UNAUTHORIZED, code, message);
        let challenge = format!(
            "Bearer authorization_uri=\"{}/{}\", error=\"invalid_token\", error_description=\"{description}\"",
            shared.authority, shared.tenant_id
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_str(&challenge).unwrap(),
        );
        return response;
    }
    if !query_map(request.uri()).contains_key("api-version") {
        return arm_error(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        );
    }
    let path = request.uri().path();
    arm_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        &format!("The Resource '{path}' was not found."),
    )
}

#[cfg(test)]
mod tests {
    use super::super::test_support::Harness;

    /// ARM requires a management token and answers ResourceNotFound for now.
    #[tokio::test]
    async fn requires_token_then_not_found() {
        let h = Harness::start().await;
        let url = format!("{}/subscriptions/x/resourceGroups/rg/providers/Microsoft.Web/sites/s/config/appsettings/list?api-version=2025-05-01", h.env("AZURE_RESOURCE_MANAGER_ENDPOINT"));
        let rsp = h.client.post(&url).send().await.unwrap();
        assert_eq!(rsp.status(), 401);
        assert!(rsp.headers().contains_key("www-authenticate"));
        let token = h.token("https://management.azure.com/").await;
        let rsp = h
            .client
            .post(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 404);
        let body: serde_json::Value = rsp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "ResourceNotFound");
        h.sandbox.shutdown().await;
    }
}
