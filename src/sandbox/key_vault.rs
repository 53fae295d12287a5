//! Key Vault secrets (data plane), one HTTPS listener per vault: get (latest, by version), set,
//! list versions (paged), update properties; api-version and the bearer challenge enforced as
//! NOTES §1 describes, so the official `azure_security_keyvault_secrets` client works unchanged.

use super::tokens::Refusal;
use super::{json_response, query_map, Shared};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// The token audience Key Vault requires.
const AUDIENCE: &str = "https://vault.azure.net";
const NUMBERED_VERSIONS: [&str; 8] = [
    "2016-10-01",
    "7.0",
    "7.1",
    "7.2",
    "7.3",
    "7.4",
    "7.5",
    "7.6",
];
const OLDEST_DATED_VERSION: &str = "2025-06-01";
const LATEST_VERSION: &str = "2026-04-01";

#[derive(Clone)]
struct Version {
    id: String,
    value: String,
    content_type: Option<String>,
    tags: Option<BTreeMap<String, String>>,
    enabled: bool,
    nbf: Option<i64>,
    exp: Option<i64>,
    created: i64,
    updated: i64,
}

struct StoredSecret {
    /// The name as first written (names are case-insensitive).
    name: String,
    versions: Vec<Version>,
}

/// One vault: its base URL and secrets by lower-case name.
pub(crate) struct Vault {
    pub name: String,
    /// `https://127.0.0.1:<port>` (no trailing slash).
    pub base_url: String,
    secrets: Mutex<HashMap<String, StoredSecret>>,
}

impl Vault {
    /// An empty vault served at `base_url`.
    pub fn new(name: &str, base_url: &str) -> Self {
        Self {
            name: name.to_string(),
            base_url: base_url.trim_end_matches('/').to_string(),
            secrets: Mutex::new(HashMap::new()),
        }
    }

    /// Adds a new version of `name` holding `value` (demo seeding and PUT).
    pub fn set(&self, name: &str, value: &str) -> Value {
        self.put(
            name,
            SetBody {
                value: value.to_string(),
                ..SetBody::default()
            },
            None,
        )
    }

    /// Every secret's latest value, for `admin/state`.
    pub fn latest_values(&self) -> BTreeMap<String, String> {
        let secrets = self.secrets.lock().unwrap();
        secrets
            .values()
            .filter_map(|s| s.versions.last().map(|v| (s.name.clone(), v.value.clone())))
            .collect()
    }

    fn put(&self, name: &str, body: SetBody, api_version: Option<&str>) -> Value {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let attributes = body.attributes.unwrap_or_default();
        let version = Version {
            id: uuid::Uuid::new_v4().simple().to_string(),
            value: body.value,
            content_type: body.content_type,
            tags: body.tags,
            enabled: attributes.enabled.unwrap_or(true),
            nbf: attributes.nbf,
            exp: attributes.exp,
            created: now,
            updated: now,
        };
        let mut secrets = self.secrets.lock().unwrap();
        let stored = secrets
            .entry(name.to_ascii_lowercase())
            .or_insert_with(|| StoredSecret {
                name: name.to_string(),
                versions: Vec::new(),
            });
        stored.versions.push(version);
        self.bundle(stored, stored.versions.len() - 1, true, api_version)
    }

    fn secret_id(&self, name: &str, version: &str) -> String {
        format!("{}/secrets/{name}/{version}", self.base_url)
    }

    /// A SecretBundle (with `value`) or a SecretItem (without).
    fn bundle(
        &self,
        stored: &StoredSecret,
        index: usize,
        with_value: bool,
        api_version: Option<&str>,
    ) -> Value {
        let v = &stored.versions[index];
        let mut attributes = json!({"enabled": v.enabled, "created": v.created, "updated": v.updated,
            "recoverableDays": 90, "recoveryLevel": "Recoverable+Purgeable"});
        if let Some(nbf) = v.nbf {
            attributes["nbf"] = json!(nbf);
        }
        if let Some(exp) = v.exp {
            attributes["exp"] = json!(exp);
        }
        let mut out = Map::new();
        if with_value {
            out.insert("value".into(), json!(v.value));
        }
        out.insert("id".into(), json!(self.secret_id(&stored.name, &v.id)));
        if let Some(ct) = &v.content_type {
            out.insert("contentType".into(), json!(ct));
        }
        out.insert("attributes".into(), attributes);
        if let Some(tags) = &v.tags {
            out.insert("tags".into(), json!(tags));
        }
        // previousVersion exists from 2025-07-01 on.
        let dated_new = api_version.is_some_and(|a| a.contains('-') && a >= "2025-07-01");
        if dated_new && index > 0 {
            out.insert(
                "previousVersion".into(),
                json!(stored.versions[index - 1].id),
            );
        }
        Value::Object(out)
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SetBody {
    value: String,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    attributes: Option<Attributes>,
}

#[derive(Deserialize, Default)]
struct Attributes {
    enabled: Option<bool>,
    nbf: Option<i64>,
    exp: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateBody {
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    attributes: Option<Attributes>,
}

#[derive(Clone)]
struct KvState {
    shared: Arc<Shared>,
    vault: Arc<Vault>,
}

/// The routes of one vault.
pub(crate) fn router(shared: Arc<Shared>, vault: Arc<Vault>) -> Router {
    let state = KvState { shared, vault };
    Router::new()
        .route("/secrets/{name}", get(get_latest).put(set_secret))
        .route("/secrets/{name}/", get(get_latest))
        .route(
            "/secrets/{name}/{version}",
            get(get_version).patch(update_secret),
        )
        .layer(from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// A KeyVaultError body.
fn kv_error(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(status, json!({"error": {"code": code, "message": message}}))
}

fn api_version_supported(v: &str) -> bool {
    let dated = v.len() == 10
        && v.chars().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }
        });
    NUMBERED_VERSIONS.contains(&v) || (dated && v >= OLDEST_DATED_VERSION)
}

/// api-version, then the bearer token; every answer carries Key Vault's headers.
async fn guard(State(state): State<KvState>, request: Request, next: Next) -> Response {
    let query = query_map(request.uri());
    let mut response = match query.get("api-version") {
        None => kv_error(StatusCode::BAD_REQUEST, "BadParameter", "The request URI must contain the api-version query parameter."),
        Some(v) if !api_version_supported(v) => kv_error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            &format!("The specified version ({v}) is not recognized. Consider using the latest supported version ({LATEST_VERSION})."),
        ),
        Some(_) => match state.shared.tokens.check(request.headers(), AUDIENCE) {
            Ok(()) => next.run(request).await,
            Err(refusal) => unauthorized(&state.shared, refusal),
        },
    };
    let headers = response.headers_mut();
    headers.insert(
        "x-ms-request-id",
        HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).unwrap(),
    );
    headers.insert(
        "x-ms-keyvault-service-version",
        HeaderValue::from_static("1.9.2871.1"),
    );
    headers.insert("x-ms-keyvault-region", HeaderValue::from_static("sandbox"));
    headers.insert(
        "x-ms-keyvault-network-info",
        HeaderValue::from_static("conn_type=Ipv4;addr=127.0.0.1;act_addr_fam=InterNetwork;"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The 401 with the challenge the SDK reads its scope from.
fn unauthorized(shared: &Shared, refusal: Refusal) -> Response {
    let message = match refusal {
        Refusal::Missing => "Request is missing a Bearer or PoP token.".to_string(),
        Refusal::Unknown => {
            "AKV10032: Invalid issuer. The token was not issued by this sandbox or has expired."
                .to_string()
        }
        Refusal::WrongAudience(found) => {
            format!("AKV10022: Invalid audience. Expected {AUDIENCE}, found: {found}.")
        }
    };
    let mut response = kv_error(StatusCode::UNAUTHORIZED, "Unauthorized", &message);
    let challenge = format!(
        "Bearer authorization=\"{}/{}\", resource=\"{AUDIENCE}\"",
        shared.authority, shared.tenant_id
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_str(&challenge).unwrap(),
    );
    response
}

fn check_name(name: &str) -> Result<(), Response> {
    let valid = (1..=127).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(kv_error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            &format!("The request URI contains an invalid name: {name}"),
        ))
    }
}

fn not_found(id: &str) -> Response {
    kv_error(
        StatusCode::NOT_FOUND,
        "SecretNotFound",
        &format!("A secret with (name/id) {id} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"),
    )
}

async fn get_latest(
    State(state): State<KvState>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    read(&state, &name, None, &query_map(request.uri()))
}

async fn get_version(
    State(state): State<KvState>,
    Path((name, version)): Path<(String, String)>,
    request: Request,
) -> Response {
    let query = query_map(request.uri());
    if version == "versions" {
        return list_versions(&state, &name, &query);
    }
    read(&state, &name, Some(&version), &query)
}

fn read(
    state: &KvState,
    name: &str,
    version: Option<&str>,
    query: &HashMap<String, String>,
) -> Response {
    if let Err(r) = check_name(name) {
        return r;
    }
    let api_version = query.get("api-version").map(String::as_str);
    let secrets = state.vault.secrets.lock().unwrap();
    let Some(stored) = secrets.get(&name.to_ascii_lowercase()) else {
        return not_found(name);
    };
    let index = match version {
        None => stored.versions.len() - 1,
        Some(v) => match stored
            .versions
            .iter()
            .position(|x| x.id.eq_ignore_ascii_case(v))
        {
            Some(i) => i,
            None => return not_found(&format!("{name}/{v}")),
        },
    };
    if !stored.versions[index].enabled {
        return json_response(
            StatusCode::FORBIDDEN,
            json!({"error": {"code": "Forbidden", "message": "Operation get is not allowed on a disabled secret.", "innererror": {"code": "SecretDisabled"}}}),
        );
    }
    json_response(
        StatusCode::OK,
        state.vault.bundle(stored, index, true, api_version),
    )
}

fn list_versions(state: &KvState, name: &str, query: &HashMap<String, String>) -> Response {
    if let Err(r) = check_name(name) {
        return r;
    }
    let max = match query.get("maxresults").map(|m| m.parse::<usize>()) {
        None => 25,
        Some(Ok(m)) if (1..=25).contains(&m) => m,
        Some(_) => {
            return kv_error(
                StatusCode::BAD_REQUEST,
                "BadParameter",
                "maxresults must be an integer between 1 and 25.",
            )
        }
    };
    let skip: usize = query
        .get("$skiptoken")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let api_version = query
        .get("api-version")
        .map(String::as_str)
        .unwrap_or(LATEST_VERSION);
    let secrets = state.vault.secrets.lock().unwrap();
    // Listing the versions of a secret that does not exist answers an empty list.
    let (items, total) = match secrets.get(&name.to_ascii_lowercase()) {
        Some(stored) => {
            let items: Vec<Value> = (skip..stored.versions.len().min(skip + max))
                .map(|i| state.vault.bundle(stored, i, false, Some(api_version)))
                .collect();
            (items, stored.versions.len())
        }
        None => (Vec::new(), 0),
    };
    let next_link = (skip + max < total).then(|| {
        format!(
            "{}/secrets/{name}/versions?api-version={api_version}&$skiptoken={}&maxresults={max}",
            state.vault.base_url,
            skip + max
        )
    });
    json_response(
        StatusCode::OK,
        json!({"value": items, "nextLink": next_link}),
    )
}

async fn set_secret(
    State(state): State<KvState>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    if let Err(r) = check_name(&name) {
        return r;
    }
    let query = query_map(request.uri());
    let bytes = match axum::body::to_bytes(request.into_body(), 1 << 20).await {
        Ok(b) => b,
        Err(_) => {
            return kv_error(
                StatusCode::BAD_REQUEST,
                "BadParameter",
                "The request body is too large.",
            )
        }
    };
    let body: SetBody = match serde_json::from_slice(&bytes) {
        Ok(b) => b,
        Err(e) if e.to_string().contains("missing field `value`") => {
            return kv_error(
                StatusCode::BAD_REQUEST,
                "BadParameter",
                "Property value is required and cannot be null.",
            )
        }
        Err(_) => {
            return kv_error(
                StatusCode::BAD_REQUEST,
                "BadParameter",
                "The request body is not valid JSON for SecretSetParameters.",
            )
        }
    };
    let bundle = state
        .vault
        .put(&name, body, query.get("api-version").map(String::as_str));
    json_response(StatusCode::OK, bundle)
}

async fn update_secret(
    State(state): State<KvState>,
    Path((name, version)): Path<(String, String)>,
    Json(body): Json<UpdateBody>,
) -> Response {
    if let Err(r) = check_name(&name) {
        return r;
    }
    let mut secrets = state.vault.secrets.lock().unwrap();
    let Some(stored) = secrets.get_mut(&name.to_ascii_lowercase()) else {
        return not_found(&name);
    };
    let Some(index) = stored
        .versions
        .iter()
        .position(|x| x.id.eq_ignore_ascii_case(&version))
    else {
        return not_found(&format!("{name}/{version}"));
    };
    let v = &mut stored.versions[index];
    if let Some(ct) = body.content_type {
        v.content_type = Some(ct);
    }
    if let Some(tags) = body.tags {
        v.tags = Some(tags);
    }
    if let Some(a) = body.attributes {
        v.enabled = a.enabled.unwrap_or(v.enabled);
        v.nbf = a.nbf.or(v.nbf);
        v.exp = a.exp.or(v.exp);
    }
    v.updated = time::OffsetDateTime::now_utc().unix_timestamp();
    json_response(
        StatusCode::OK,
        state.vault.bundle(stored, index, false, None),
    )
}

#[cfg(test)]
mod tests {
    use super::super::test_support::Harness;
    use std::sync::Arc;

    /// Without a token: 401 with the challenge and the reference body; without api-version: 400.
    #[tokio::test]
    async fn challenge_and_api_version() {
        let h = Harness::start().await;
        let base = h.sandbox.info().endpoints.key_vaults["kv-consumers-prd"].clone();
        let rsp = h
            .client
            .get(format!(
                "{base}secrets/healthcheck-prd-apikey?api-version=7.6"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 401);
        let challenge = rsp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(
            challenge,
            format!(
                "Bearer authorization=\"{}/{}\", resource=\"https://vault.azure.net\"",
                h.env("AZURE_AUTHORITY_HOST"),
                h.env("AZURE_TENANT_ID")
            )
        );
        assert!(rsp.headers().contains_key("x-ms-request-id"));
        assert!(rsp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        let body: serde_json::Value = rsp.json().await.unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": {"code": "Unauthorized", "message": "Request is missing a Bearer or PoP token."}})
        );

        let token = h.token("https://vault.azure.net").await;
        let rsp = h
            .client
            .get(format!("{base}secrets/healthcheck-prd-apikey"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 400);
        let body: serde_json::Value = rsp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "BadParameter");
        let rsp = h
            .client
            .get(format!(
                "{base}secrets/healthcheck-prd-apikey?api-version=7.7"
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 400);

        // A token for another audience is refused.
        let arm = h.token("https://management.azure.com/").await;
        let rsp = h
            .client
            .get(format!("{base}secrets/x?api-version=7.6"))
            .bearer_auth(&arm)
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 401);
        h.sandbox.shutdown().await;
    }

    /// With a token: get latest (with or without trailing slash, any case), put a new version,
    /// get by version, page through versions, patch properties, 404 body.
    #[tokio::test]
    async fn get_put_versions_and_update() {
        let h = Harness::start().await;
        let base = h.sandbox.info().endpoints.key_vaults["kv-consumers-prd"].clone();
        let token = h.token("https://vault.azure.net").await;
        let get = |path: String| {
            h.client
                .get(format!("{base}{path}"))
                .bearer_auth(&token)
                .send()
        };

        let first: serde_json::Value =
            get("secrets/Healthcheck-PRD-apikey/?api-version=2026-04-01".into())
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        assert!(first["value"].as_str().unwrap().len() == 32);
        let id = first["id"].as_str().unwrap();
        assert!(
            id.starts_with(&format!("{base}secrets/healthcheck-prd-apikey/")),
            "{id}"
        );
        assert_eq!(id.rsplit('/').next().unwrap().len(), 32);

        let rsp = h
            .client
            .put(format!(
                "{base}secrets/healthcheck-prd-apikey?api-version=7.6"
            ))
            .bearer_auth(&token)
            .json(&serde_json::json!({"value": "new-value", "contentType": "text/plain"}))
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 200);
        let set: serde_json::Value = rsp.json().await.unwrap();
        assert_eq!(set["value"], "new-value");
        assert_eq!(set["attributes"]["recoveryLevel"], "Recoverable+Purgeable");
        let latest: serde_json::Value =
            get("secrets/healthcheck-prd-apikey?api-version=7.5".into())
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        assert_eq!(latest["value"], "new-value");
        let old_version = id.rsplit('/').next().unwrap();
        let old: serde_json::Value = get(format!(
            "secrets/healthcheck-prd-apikey/{old_version}?api-version=7.5"
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_eq!(old["value"], first["value"]);

        let page: serde_json::Value =
            get("secrets/healthcheck-prd-apikey/versions?api-version=7.6&maxresults=1".into())
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        assert_eq!(page["value"].as_array().unwrap().len(), 1);
        assert!(page["value"][0].get("value").is_none());
        let next = page["nextLink"].as_str().unwrap();
        let page2: serde_json::Value = h
            .client
            .get(next)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(page2["value"].as_array().unwrap().len(), 1);
        assert!(page2["nextLink"].is_null());

        let set_version = set["id"].as_str().unwrap().rsplit('/').next().unwrap();
        let rsp = h
            .client
            .patch(format!("{base}secrets/healthcheck-prd-apikey/{set_version}?api-version=7.6"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"tags": {"rotatedBy": "sandbox"}, "attributes": {"enabled": true}}))
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 200);
        let updated: serde_json::Value = rsp.json().await.unwrap();
        assert!(updated.get("value").is_none());
        assert_eq!(updated["tags"]["rotatedBy"], "sandbox");
        let disable = serde_json::json!({"attributes": {"enabled": false}});
        let url = format!("{base}secrets/healthcheck-prd-apikey/{set_version}?api-version=7.6");
        h.client
            .patch(&url)
            .bearer_auth(&token)
            .json(&disable)
            .send()
            .await
            .unwrap();
        let rsp = get(format!(
            "secrets/healthcheck-prd-apikey/{set_version}?api-version=7.6"
        ))
        .await
        .unwrap();
        assert_eq!(rsp.status(), 403);
        assert_eq!(
            rsp.json::<serde_json::Value>().await.unwrap()["error"]["innererror"]["code"],
            "SecretDisabled"
        );

        let rsp = get("secrets/partner-apikey?api-version=7.6".into())
            .await
            .unwrap();
        assert_eq!(rsp.status(), 404);
        let body: serde_json::Value = rsp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "SecretNotFound");
        let rsp = get("secrets/bad_name?api-version=7.6".into())
            .await
            .unwrap();
        assert_eq!(rsp.status(), 400);
        h.sandbox.shutdown().await;
    }

    /// The official SecretClient (challenge auth, ClientSecretCredential against the sandbox
    /// authority) reads and writes secrets unchanged.
    #[tokio::test]
    async fn official_secret_client_works() {
        use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
        use azure_core::http::{ClientOptions, Transport};
        use azure_identity::{ClientSecretCredential, ClientSecretCredentialOptions};
        use azure_security_keyvault_secrets::models::SetSecretParameters;
        use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};

        let h = Harness::start().await;
        let transport = Transport::new(Arc::new(h.client.clone()));
        let mut custom = CustomConfiguration::default();
        custom.authority_host = h.env("AZURE_AUTHORITY_HOST");
        let client_options = ClientOptions {
            transport: Some(transport),
            cloud: Some(Arc::new(CloudConfiguration::Custom(custom))),
            ..Default::default()
        };
        let credential = ClientSecretCredential::new(
            &h.env("AZURE_TENANT_ID"),
            h.env("SANDBOX_CLIENT_ID"),
            h.env("SANDBOX_CLIENT_SECRET").into(),
            Some(ClientSecretCredentialOptions {
                client_options: client_options.clone(),
            }),
        )
        .unwrap();
        let options = SecretClientOptions {
            client_options,
            verify_challenge_resource: Some(false),
            ..Default::default()
        };
        let base = h.sandbox.info().endpoints.key_vaults["kv-consumers-prd"].clone();
        let client = SecretClient::new(&base, credential, Some(options)).unwrap();

        let secret = client
            .get_secret("reference-prd-apikey", None)
            .await
            .unwrap()
            .into_model()
            .unwrap();
        assert_eq!(secret.value.as_deref().map(str::len), Some(32));

        let params = SetSecretParameters {
            value: Some("rotated-by-sdk".into()),
            ..Default::default()
        };
        let set = client
            .set_secret("orders-prd-apikey", params.try_into().unwrap(), None)
            .await
            .unwrap()
            .into_model()
            .unwrap();
        assert_eq!(set.value.as_deref(), Some("rotated-by-sdk"));
        let read = client
            .get_secret("orders-prd-apikey", None)
            .await
            .unwrap()
            .into_model()
            .unwrap();
        assert_eq!(read.value.as_deref(), Some("rotated-by-sdk"));

        let services: Vec<String> = h
            .requests()
            .await
            .iter()
            .map(|r| r["service"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(services.first().map(String::as_str), Some("keyVault"));
        assert!(services.contains(&"authority".to_string()));
        h.sandbox.shutdown().await;
    }
}
