//! A consumer application's own key API (a contract this project defines): `POST` stores the
//! key an app should use, `GET ?appName=` tells which key is stored (as a SHA-256, never the
//! key). Callers authenticate with a managed-identity token for [`AUDIENCE`].

use super::double::{Double, Platform, Shown};
use super::{json_response, query_map};
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Path of the API on its listener.
pub(crate) const PATH: &str = "/internal/api-keys";
/// The token audience the API requires (scope `api://apikey-consumer-sandbox/.default`).
pub(crate) const AUDIENCE: &str = "api://apikey-consumer-sandbox";

/// What the application stored for one of its app names.
#[derive(Clone)]
pub(crate) struct StoredKey {
    pub apim_app_name: String,
    pub api_key: String,
    pub expires_at: Option<String>,
}

/// Stored keys by `appName`.
pub(crate) struct Store {
    /// `https://127.0.0.1:<port>` (the API is at [`PATH`] under it).
    pub base_url: String,
    keys: Mutex<BTreeMap<String, StoredKey>>,
}

impl Store {
    /// An application with no stored key, served at `base_url`.
    pub fn new(base_url: &str) -> Self {
        Self {
            base_url: base_url.to_string(),
            keys: Mutex::default(),
        }
    }

    /// Stores (or replaces) the key of `app_name`.
    pub fn put(&self, app_name: &str, key: StoredKey) {
        self.keys.lock().unwrap().insert(app_name.to_string(), key);
    }

    /// Everything stored, keys included, for `admin/state`.
    pub fn snapshot(&self) -> Value {
        let keys = self.keys.lock().unwrap();
        let map: serde_json::Map<String, Value> = keys
            .iter()
            .map(|(name, k)| {
                (name.clone(), json!({"apimAppName": k.apim_app_name, "apiKey": k.api_key, "expiresAt": k.expires_at}))
            })
            .collect();
        Value::Object(map)
    }
}

impl Double for Store {
    fn service(&self) -> &'static str {
        "applicationApi"
    }

    /// The API's routes.
    fn router(self: Arc<Self>, platform: Arc<Platform>) -> Router {
        let ctx = Ctx {
            platform,
            application_api: self,
        };
        Router::new()
            .route(PATH, get(read).post(write))
            .with_state(ctx)
    }

    fn state(&self) -> Option<Shown> {
        Some(Shown {
            section: "applicationApis",
            instance: None,
            value: self.snapshot(),
        })
    }
}

#[derive(Clone)]
struct Ctx {
    platform: Arc<Platform>,
    application_api: Arc<Store>,
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(status, json!({"error": {"code": code, "message": message}}))
}

fn authorize(ctx: &Ctx, request: &Request) -> Result<(), Response> {
    ctx.platform
        .tokens
        .check(request.headers(), AUDIENCE)
        .map_err(|_| {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                &format!("A bearer token for {AUDIENCE} is required."),
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            r
        })
}

/// `expiresAt` must be present; `null` is allowed.
fn required_nullable<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PostBody {
    app_name: String,
    apim_app_name: String,
    api_key: String,
    #[serde(default, deserialize_with = "required_nullable")]
    expires_at: Option<Option<String>>,
}

async fn write(State(ctx): State<Ctx>, request: Request) -> Response {
    if let Err(r) = authorize(&ctx, &request) {
        return r;
    }
    let body: Bytes = match axum::body::to_bytes(request.into_body(), 1 << 16).await {
        Ok(b) => b,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "The body is too large.",
            )
        }
    };
    let body: PostBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("Invalid body: {e}"),
            )
        }
    };
    let Some(expires_at) = body.expires_at else {
        return error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Invalid body: missing field `expiresAt` (an RFC 3339 time or null)",
        );
    };
    if let Some(t) = &expires_at {
        if time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_err() {
            return error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "Invalid body: expiresAt must be an RFC 3339 time or null",
            );
        }
    }
    if body.app_name.is_empty() || body.api_key.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Invalid body: appName and apiKey must not be empty",
        );
    }
    ctx.application_api.put(
        &body.app_name,
        StoredKey {
            apim_app_name: body.apim_app_name,
            api_key: body.api_key,
            expires_at,
        },
    );
    StatusCode::NO_CONTENT.into_response()
}

async fn read(State(ctx): State<Ctx>, request: Request) -> Response {
    if let Err(r) = authorize(&ctx, &request) {
        return r;
    }
    let Some(app_name) = query_map(request.uri())
        .remove("appName")
        .filter(|a| !a.is_empty())
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "The appName query parameter is required.",
        );
    };
    let keys = ctx.application_api.keys.lock().unwrap();
    match keys.get(&app_name) {
        Some(k) => json_response(
            StatusCode::OK,
            json!({
                "appName": app_name,
                "apimAppName": k.apim_app_name,
                "apiKeySha256": super::secret::sha256_hex(k.api_key.as_bytes()),
                "expiresAt": k.expires_at,
            }),
        ),
        None => error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("No API key is stored for appName {app_name}."),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::Harness;
    use serde_json::{json, Value};

    /// POST stores, GET answers the SHA-256; no or wrong token is 401; bad bodies are 400.
    #[tokio::test]
    async fn post_get_round_trip_and_auth() {
        let h = Harness::start().await;
        let url = h.sandbox.info().endpoints.application_apis["healthcheck-api"].clone();
        let token = h.token("api://apikey-consumer-sandbox").await;
        let body = json!({"appName": "healthcheck-api", "apimAppName": "APIKeyRotator_TestApp1_Sandbox", "apiKey": "abc", "expiresAt": "2030-01-01T00:00:00Z"});

        assert_eq!(
            h.client
                .post(&url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status(),
            401
        );
        let vault_token = h.token("https://vault.azure.net").await;
        assert_eq!(
            h.client
                .post(&url)
                .bearer_auth(&vault_token)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status(),
            401
        );

        let rsp = h
            .client
            .get(&url)
            .query(&[("appName", "healthcheck-api")])
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 404);
        assert_eq!(
            rsp.json::<Value>().await.unwrap()["error"]["code"],
            "NotFound"
        );

        assert_eq!(
            h.client
                .post(&url)
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status(),
            204
        );
        let rsp = h
            .client
            .get(&url)
            .query(&[("appName", "healthcheck-api")])
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 200);
        let got: Value = rsp.json().await.unwrap();
        assert_eq!(
            got["apiKeySha256"],
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(got["expiresAt"], "2030-01-01T00:00:00Z");

        let mut unknown = body.clone();
        unknown["extra"] = json!(1);
        assert_eq!(
            h.client
                .post(&url)
                .bearer_auth(&token)
                .json(&unknown)
                .send()
                .await
                .unwrap()
                .status(),
            400
        );
        let mut missing = body.clone();
        missing.as_object_mut().unwrap().remove("expiresAt");
        assert_eq!(
            h.client
                .post(&url)
                .bearer_auth(&token)
                .json(&missing)
                .send()
                .await
                .unwrap()
                .status(),
            400
        );
        let mut null_expiry = body.clone();
        null_expiry["expiresAt"] = Value::Null;
        assert_eq!(
            h.client
                .post(&url)
                .bearer_auth(&token)
                .json(&null_expiry)
                .send()
                .await
                .unwrap()
                .status(),
            204
        );
        h.sandbox.shutdown().await;
    }
}
