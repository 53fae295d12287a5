//! Key Vault secrets (data plane), one HTTPS listener per vault, as the REST reference defines
//! them (`tests/fixtures/specs/keyvault-secrets-paths.json` holds the excerpt): get (latest, by
//! version), set, update properties, list secrets and list versions (paged: `maxresults` 1–25,
//! default 25, and an absolute `nextLink` carrying a `$skiptoken`), and soft delete (delete, list
//! and get deleted secrets, recover, purge), with the service's answers around them: 409
//! `ObjectIsDeletedButRecoverable` when a deleted name is set again, 403 `SecretDisabled` for a
//! disabled secret's value, 404 `SecretNotFound` for a deleted one. api-version and the bearer
//! challenge are enforced as NOTES §1 describes, so the official `azure_security_keyvault_secrets`
//! client works unchanged.

use super::double::{Double, Platform, Shown};
use super::limits::{whole_seconds, Limit, Rate};
use super::tokens::Refusal;
use super::{json_response, query_map};
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

// Key Vault's service limits for secrets, "maximum transactions allowed in 10 seconds, per
// vault per region": https://learn.microsoft.com/en-us/azure/key-vault/general/service-limits
/// Secret CREATE (every `PUT /secrets/{name}` makes a version): 300 per 10 s.
const SECRET_CREATE: Rate = Rate::per_window(300.0, 10.0);
/// All other transactions (GET, PATCH, list, ...): 4,000 per 10 s.
const OTHER_TRANSACTIONS: Rate = Rate::per_window(4000.0, 10.0);

/// The vault's bucket for `method path` (`/secrets...` only).
fn vault_limit(vault: &str, method: &axum::http::Method, path: &str) -> Option<Limit> {
    let rest = path.strip_prefix("/secrets")?;
    let create = *method == axum::http::Method::PUT
        && rest
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .count()
            == 1;
    let (class, rate) = if create {
        ("secretCreate", SECRET_CREATE)
    } else {
        ("transactions", OTHER_TRANSACTIONS)
    };
    Some(Limit {
        scope: vault.to_string(),
        class,
        rate,
    })
}

/// Key Vault's 429: `Throttled` with the reason of the limit reached (the body captured in
/// vcsjones/AzureSignTool#219), and `Retry-After` in seconds as the throttling guidance's
/// clients read it (https://learn.microsoft.com/en-us/azure/key-vault/general/overview-throttling).
pub(crate) fn vault_throttled(retry_after: Duration) -> Response {
    let body = json!({"error": {
        "code": "Throttled",
        "message": "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached",
    }});
    let mut response = json_response(StatusCode::TOO_MANY_REQUESTS, body);
    response
        .headers_mut()
        .insert("retry-after", HeaderValue::from(whole_seconds(retry_after)));
    response
}

/// The token audience Key Vault requires.
const AUDIENCE: &str = "https://vault.azure.net";
/// Versions before the dated ones, as the specification's stable folders list them.
const NUMBERED_VERSIONS: [&str; 9] = [
    "2015-06-01",
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
/// Days a deleted secret stays recoverable: the vault's `softDeleteRetentionInDays` (90, the
/// default), also reported as every secret's `recoverableDays`.
const RETENTION_DAYS: i64 = 90;
/// The page size when `maxresults` is absent, and its largest accepted value (the spec's
/// `maximum`).
const PAGE_SIZE: usize = 25;

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

/// When a soft-deleted secret was deleted and when the service would purge it.
struct Deletion {
    deleted_date: i64,
    scheduled_purge_date: i64,
}

struct StoredSecret {
    /// The name as first written (names are case-insensitive).
    name: String,
    /// Every version, oldest first.
    versions: Vec<Version>,
    /// Set while the secret is soft-deleted: then only the deleted-secrets operations see it,
    /// and its name cannot be reused until it is recovered or purged.
    deleted: Option<Deletion>,
}

impl StoredSecret {
    fn latest(&self) -> usize {
        self.versions.len() - 1
    }

    fn position(&self, version: &str) -> Option<usize> {
        self.versions
            .iter()
            .position(|v| v.id.eq_ignore_ascii_case(version))
    }
}

type Secrets = HashMap<String, StoredSecret>;

/// The secret `name` unless it is missing or soft-deleted.
fn live<'a>(secrets: &'a mut Secrets, name: &str) -> Option<&'a mut StoredSecret> {
    secrets
        .get_mut(&name.to_ascii_lowercase())
        .filter(|s| s.deleted.is_none())
}

/// The soft-deleted secret `name`, if it is one.
fn deleted<'a>(secrets: &'a mut Secrets, name: &str) -> Option<&'a mut StoredSecret> {
    secrets
        .get_mut(&name.to_ascii_lowercase())
        .filter(|s| s.deleted.is_some())
}

/// One vault: its base URL and secrets by lower-case name.
pub(crate) struct Vault {
    pub name: String,
    /// `https://127.0.0.1:<port>` (no trailing slash).
    pub base_url: String,
    secrets: Mutex<Secrets>,
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
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

    /// Adds a new version of `name` holding `value` (demo seeding); `None` when the name is
    /// soft-deleted, as the service refuses it.
    pub fn set(&self, name: &str, value: &str) -> Option<Value> {
        let body = SetBody {
            value: value.to_string(),
            ..SetBody::default()
        };
        self.put(name, body, None).ok()
    }

    /// Every live secret's latest value, for `admin/state`.
    pub fn latest_values(&self) -> BTreeMap<String, String> {
        let secrets = self.secrets.lock().unwrap();
        secrets
            .values()
            .filter(|s| s.deleted.is_none())
            .filter_map(|s| s.versions.last().map(|v| (s.name.clone(), v.value.clone())))
            .collect()
    }

    /// A new version of `name`, as a SecretBundle; 409 while the name is soft-deleted.
    fn put(&self, name: &str, body: SetBody, api_version: Option<&str>) -> Result<Value, Response> {
        let now = now();
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
                deleted: None,
            });
        if stored.deleted.is_some() {
            return Err(conflict(name));
        }
        stored.versions.push(version);
        Ok(self.bundle(stored, stored.latest(), true, api_version))
    }

    fn secret_id(&self, name: &str, version: &str) -> String {
        format!("{}/secrets/{name}/{version}", self.base_url)
    }

    fn attributes(v: &Version) -> Value {
        let mut attributes = json!({"enabled": v.enabled, "created": v.created, "updated": v.updated,
            "recoverableDays": RETENTION_DAYS, "recoveryLevel": "Recoverable+Purgeable"});
        if let Some(nbf) = v.nbf {
            attributes["nbf"] = json!(nbf);
        }
        if let Some(exp) = v.exp {
            attributes["exp"] = json!(exp);
        }
        attributes
    }

    /// A SecretBundle (with `value`, or without as update and recover answer it).
    fn bundle(
        &self,
        stored: &StoredSecret,
        index: usize,
        with_value: bool,
        api_version: Option<&str>,
    ) -> Value {
        let v = &stored.versions[index];
        let mut out = Map::new();
        if with_value {
            out.insert("value".into(), json!(v.value));
        }
        out.insert("id".into(), json!(self.secret_id(&stored.name, &v.id)));
        if let Some(ct) = &v.content_type {
            out.insert("contentType".into(), json!(ct));
        }
        out.insert("attributes".into(), Self::attributes(v));
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

    /// A SecretItem of `GET /secrets` (a DeletedSecretItem when the secret is soft-deleted):
    /// the secret's id without a version and its latest version's properties, never a value.
    fn item(&self, stored: &StoredSecret) -> Value {
        let v = &stored.versions[stored.latest()];
        let mut out = Map::new();
        out.insert(
            "id".into(),
            json!(format!("{}/secrets/{}", self.base_url, stored.name)),
        );
        if let Some(ct) = &v.content_type {
            out.insert("contentType".into(), json!(ct));
        }
        out.insert("attributes".into(), Self::attributes(v));
        if let Some(tags) = &v.tags {
            out.insert("tags".into(), json!(tags));
        }
        self.with_deletion(Value::Object(out), stored)
    }

    /// A DeletedSecretBundle: the latest version's bundle (no value) and the recovery fields.
    fn deleted_bundle(&self, stored: &StoredSecret, api_version: Option<&str>) -> Value {
        let bundle = self.bundle(stored, stored.latest(), false, api_version);
        self.with_deletion(bundle, stored)
    }

    /// Adds `recoveryId`, `deletedDate` and `scheduledPurgeDate` when `stored` is deleted.
    fn with_deletion(&self, mut value: Value, stored: &StoredSecret) -> Value {
        if let Some(d) = &stored.deleted {
            value["recoveryId"] =
                json!(format!("{}/deletedsecrets/{}", self.base_url, stored.name));
            value["deletedDate"] = json!(d.deleted_date);
            value["scheduledPurgeDate"] = json!(d.scheduled_purge_date);
        }
        value
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

/// SecretUpdateParameters: there is no `value` (a secret's value cannot change; a `value` sent
/// anyway is ignored like any unknown property).
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
    platform: Arc<Platform>,
    vault: Arc<Vault>,
}

impl Double for Vault {
    fn service(&self) -> &'static str {
        "keyVault"
    }

    fn router(self: Arc<Self>, platform: Arc<Platform>) -> Router {
        router(platform, self)
    }

    fn limit(&self, method: &axum::http::Method, path: &str) -> Option<Limit> {
        vault_limit(&self.name, method, path)
    }

    fn throttled(&self, _limit: &Limit, retry_after: Duration) -> Response {
        vault_throttled(retry_after)
    }

    fn state(&self) -> Option<Shown> {
        Some(Shown {
            section: "keyVaults",
            instance: Some(self.name.clone()),
            value: json!(self.latest_values()),
        })
    }
}

/// The routes of one vault: the paths and methods of the secrets REST specification.
fn router(platform: Arc<Platform>, vault: Arc<Vault>) -> Router {
    let state = KvState { platform, vault };
    Router::new()
        .route("/secrets", get(list_secrets))
        .route(
            "/secrets/{name}",
            get(get_latest).put(set_secret).delete(delete_secret),
        )
        // The official clients leave the version segment empty for "latest".
        .route("/secrets/{name}/", get(get_latest).patch(update_latest))
        .route(
            "/secrets/{name}/{version}",
            get(get_version).patch(update_version),
        )
        .route("/deletedsecrets", get(list_deleted))
        .route(
            "/deletedsecrets/{name}",
            get(get_deleted).delete(purge_deleted),
        )
        .route("/deletedsecrets/{name}/recover", post(recover_deleted))
        .layer(from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// A KeyVaultError body.
fn kv_error(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(status, json!({"error": {"code": code, "message": message}}))
}

fn bad_parameter(message: &str) -> Response {
    kv_error(StatusCode::BAD_REQUEST, "BadParameter", message)
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
        None => bad_parameter("The request URI must contain the api-version query parameter."),
        Some(v) if !api_version_supported(v) => bad_parameter(&format!(
            "The specified version ({v}) is not recognized. Consider using the latest supported version ({LATEST_VERSION})."
        )),
        Some(_) => match state.platform.tokens.check(request.headers(), AUDIENCE) {
            Ok(()) => next.run(request).await,
            Err(refusal) => unauthorized(&state.platform, refusal),
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
fn unauthorized(platform: &Platform, refusal: Refusal) -> Response {
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
        platform.tenant.authority, platform.tenant.id
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
        Err(bad_parameter(&format!(
            "The request URI contains an invalid name: {name}"
        )))
    }
}

/// 404 for a secret (or `name/version`) that does not exist or is soft-deleted.
fn not_found(id: &str) -> Response {
    kv_error(
        StatusCode::NOT_FOUND,
        "SecretNotFound",
        &format!("A secret with (name/id) {id} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"),
    )
}

/// 404 of the deleted-secrets operations for a name that is not soft-deleted.
fn deleted_not_found(name: &str) -> Response {
    kv_error(
        StatusCode::NOT_FOUND,
        "SecretNotFound",
        &format!("Deleted Secret not found: {name}"),
    )
}

/// 409 for a set while the name is soft-deleted.
fn conflict(name: &str) -> Response {
    json_response(
        StatusCode::CONFLICT,
        json!({"error": {"code": "Conflict", "message": format!("Secret {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the secret can only be recovered or purged."), "innererror": {"code": "ObjectIsDeletedButRecoverable"}}}),
    )
}

/// The request's api-version (the guard made sure there is one).
fn api_version(query: &HashMap<String, String>) -> String {
    query
        .get("api-version")
        .cloned()
        .unwrap_or_else(|| LATEST_VERSION.to_string())
}

async fn body_bytes(request: Request) -> Result<Bytes, Response> {
    axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .map_err(|_| bad_parameter("The request body is too large."))
}

/// `maxresults` and the position a `$skiptoken` stands for.
struct Paging {
    max: usize,
    /// `maxresults` as given, repeated in the nextLink.
    given: Option<usize>,
    /// The key of the first item of this page.
    marker: Option<String>,
}

fn paging(query: &HashMap<String, String>) -> Result<Paging, Response> {
    let given = match query.get("maxresults") {
        None => None,
        Some(m) => match m.parse::<usize>() {
            Ok(m) if (1..=PAGE_SIZE).contains(&m) => Some(m),
            _ => {
                return Err(bad_parameter(
                    "maxresults must be an integer between 1 and 25.",
                ))
            }
        },
    };
    let marker = match query.get("$skiptoken") {
        None => None,
        Some(token) => Some(
            decode_skiptoken(token).ok_or_else(|| bad_parameter("The skip token is not valid."))?,
        ),
    };
    Ok(Paging {
        max: given.unwrap_or(PAGE_SIZE),
        given,
        marker,
    })
}

/// The service's skip tokens are base64 of `{"NextMarker":"…","TargetLocation":0}`; this one
/// uses the URL-safe alphabet so it travels unescaped.
fn encode_skiptoken(marker: &str) -> String {
    URL_SAFE_NO_PAD.encode(json!({"NextMarker": marker, "TargetLocation": 0}).to_string())
}

fn decode_skiptoken(token: &str) -> Option<String> {
    // A `+` of the standard alphabet arrives as a space when the query was form-decoded.
    let token = token.trim_end_matches('=').replace(' ', "+");
    let bytes = URL_SAFE_NO_PAD
        .decode(&token)
        .or_else(|_| STANDARD_NO_PAD.decode(&token))
        .ok()?;
    let json: Value = serde_json::from_slice(&bytes).ok()?;
    json["NextMarker"].as_str().map(str::to_string)
}

/// One page of `items` (sorted by key), from the skip token's marker on, and the absolute
/// nextLink to the rest (`null` on the last page), as the service pages every list.
fn page(
    vault: &Vault,
    path: &str,
    query: &HashMap<String, String>,
    paging: Paging,
    items: Vec<(String, Value)>,
) -> Response {
    let start = match &paging.marker {
        Some(m) => items.partition_point(|(k, _)| k < m),
        None => 0,
    };
    let end = (start + paging.max).min(items.len());
    let next_link = items.get(end).map(|(key, _)| {
        let mut link = format!(
            "{}{path}?api-version={}&$skiptoken={}",
            vault.base_url,
            api_version(query),
            encode_skiptoken(key)
        );
        if let Some(m) = paging.given {
            link.push_str(&format!("&maxresults={m}"));
        }
        link
    });
    let value: Vec<Value> = items
        .into_iter()
        .skip(start)
        .take(end - start)
        .map(|(_, v)| v)
        .collect();
    json_response(
        StatusCode::OK,
        json!({"value": value, "nextLink": next_link}),
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
    let mut secrets = state.vault.secrets.lock().unwrap();
    let Some(stored) = live(&mut secrets, name) else {
        return not_found(name);
    };
    let index = match version {
        None => stored.latest(),
        Some(v) => match stored.position(v) {
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
        state
            .vault
            .bundle(stored, index, true, Some(&api_version(query))),
    )
}

/// `GET /secrets`: every live secret (not its versions), by name.
async fn list_secrets(State(state): State<KvState>, request: Request) -> Response {
    let query = query_map(request.uri());
    let paging = match paging(&query) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let secrets = state.vault.secrets.lock().unwrap();
    let mut items: Vec<(String, Value)> = secrets
        .iter()
        .filter(|(_, s)| s.deleted.is_none())
        .map(|(key, s)| (key.clone(), state.vault.item(s)))
        .collect();
    items.sort_by(|a, b| a.0.cmp(&b.0));
    page(&state.vault, "/secrets", &query, paging, items)
}

/// `GET /secrets/{name}/versions`: every version's properties, ordered by version id as the
/// service orders them (not by age).
fn list_versions(state: &KvState, name: &str, query: &HashMap<String, String>) -> Response {
    if let Err(r) = check_name(name) {
        return r;
    }
    let paging = match paging(query) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let api_version = api_version(query);
    let mut secrets = state.vault.secrets.lock().unwrap();
    // Listing the versions of a secret that does not exist answers an empty list.
    let mut items: Vec<(String, Value)> = match live(&mut secrets, name) {
        Some(stored) => (0..stored.versions.len())
            .map(|i| {
                (
                    stored.versions[i].id.clone(),
                    state.vault.bundle(stored, i, false, Some(&api_version)),
                )
            })
            .collect(),
        None => Vec::new(),
    };
    items.sort_by(|a, b| a.0.cmp(&b.0));
    page(
        &state.vault,
        &format!("/secrets/{name}/versions"),
        query,
        paging,
        items,
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
    let bytes = match body_bytes(request).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let body: SetBody = match serde_json::from_slice(&bytes) {
        Ok(b) => b,
        Err(e) if e.to_string().contains("missing field `value`") => {
            return bad_parameter("Property value is required and cannot be null.")
        }
        Err(_) => {
            return bad_parameter("The request body is not valid JSON for SecretSetParameters.")
        }
    };
    match state.vault.put(&name, body, Some(&api_version(&query))) {
        Ok(bundle) => json_response(StatusCode::OK, bundle),
        Err(r) => r,
    }
}

async fn update_latest(
    State(state): State<KvState>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    update(&state, &name, None, request).await
}

async fn update_version(
    State(state): State<KvState>,
    Path((name, version)): Path<(String, String)>,
    request: Request,
) -> Response {
    update(&state, &name, Some(&version), request).await
}

/// `PATCH /secrets/{name}/{version}`: content type, attributes and tags change, the value does
/// not; attributes not given are left as they are; the answer is the bundle without its value.
async fn update(state: &KvState, name: &str, version: Option<&str>, request: Request) -> Response {
    if let Err(r) = check_name(name) {
        return r;
    }
    let api_version = api_version(&query_map(request.uri()));
    let bytes = match body_bytes(request).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Ok(body) = serde_json::from_slice::<UpdateBody>(&bytes) else {
        return bad_parameter("The request body is not valid JSON for SecretUpdateParameters.");
    };
    let mut secrets = state.vault.secrets.lock().unwrap();
    let Some(stored) = live(&mut secrets, name) else {
        return not_found(name);
    };
    let index = match version {
        None => stored.latest(),
        Some(v) => match stored.position(v) {
            Some(i) => i,
            None => return not_found(&format!("{name}/{v}")),
        },
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
    v.updated = now();
    json_response(
        StatusCode::OK,
        state.vault.bundle(stored, index, false, Some(&api_version)),
    )
}

/// `DELETE /secrets/{name}`: soft delete of every version; the answer is a DeletedSecretBundle.
async fn delete_secret(
    State(state): State<KvState>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    if let Err(r) = check_name(&name) {
        return r;
    }
    let api_version = api_version(&query_map(request.uri()));
    let mut secrets = state.vault.secrets.lock().unwrap();
    let Some(stored) = live(&mut secrets, &name) else {
        return not_found(&name);
    };
    let now = now();
    stored.deleted = Some(Deletion {
        deleted_date: now,
        scheduled_purge_date: now + RETENTION_DAYS * 24 * 3600,
    });
    json_response(
        StatusCode::OK,
        state.vault.deleted_bundle(stored, Some(&api_version)),
    )
}

/// `GET /deletedsecrets`: every soft-deleted secret, by name.
async fn list_deleted(State(state): State<KvState>, request: Request) -> Response {
    let query = query_map(request.uri());
    let paging = match paging(&query) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let secrets = state.vault.secrets.lock().unwrap();
    let mut items: Vec<(String, Value)> = secrets
        .iter()
        .filter(|(_, s)| s.deleted.is_some())
        .map(|(key, s)| (key.clone(), state.vault.item(s)))
        .collect();
    items.sort_by(|a, b| a.0.cmp(&b.0));
    page(&state.vault, "/deletedsecrets", &query, paging, items)
}

async fn get_deleted(
    State(state): State<KvState>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    if let Err(r) = check_name(&name) {
        return r;
    }
    let api_version = api_version(&query_map(request.uri()));
    let mut secrets = state.vault.secrets.lock().unwrap();
    match deleted(&mut secrets, &name) {
        Some(stored) => json_response(
            StatusCode::OK,
            state.vault.deleted_bundle(stored, Some(&api_version)),
        ),
        None => deleted_not_found(&name),
    }
}

/// `POST /deletedsecrets/{name}/recover`: the secret is live again, every version kept; the
/// answer is its latest bundle without the value.
async fn recover_deleted(
    State(state): State<KvState>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    if let Err(r) = check_name(&name) {
        return r;
    }
    let api_version = api_version(&query_map(request.uri()));
    let mut secrets = state.vault.secrets.lock().unwrap();
    let Some(stored) = deleted(&mut secrets, &name) else {
        return deleted_not_found(&name);
    };
    stored.deleted = None;
    json_response(
        StatusCode::OK,
        state
            .vault
            .bundle(stored, stored.latest(), false, Some(&api_version)),
    )
}

/// `DELETE /deletedsecrets/{name}`: gone for good, the name free again; 204 without a body.
async fn purge_deleted(State(state): State<KvState>, Path(name): Path<String>) -> Response {
    if let Err(r) = check_name(&name) {
        return r;
    }
    let mut secrets = state.vault.secrets.lock().unwrap();
    if deleted(&mut secrets, &name).is_none() {
        return deleted_not_found(&name);
    }
    secrets.remove(&name.to_ascii_lowercase());
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::Harness;
    use base64::Engine;
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

    /// List, delete, recover and purge on the wire: the nextLink and its skip token, the
    /// DeletedSecretBundle fields, the 409 / 404 bodies, a PATCH that cannot change the value,
    /// a 204 without a body.
    #[tokio::test]
    async fn list_and_soft_delete_on_the_wire() {
        let h = Harness::start().await;
        let base = h.sandbox.info().endpoints.key_vaults["kv-consumers-prd"].clone();
        let token = h.token("https://vault.azure.net").await;
        let send = |method: reqwest::Method, path: &str, body: Option<serde_json::Value>| {
            let mut request = h
                .client
                .request(method, format!("{base}{path}"))
                .bearer_auth(&token);
            request = match body {
                Some(body) => request.json(&body),
                // Front ends refuse a bodiless POST without a length (411).
                None => request.header("content-length", "0"),
            };
            request.send()
        };
        let json = |r: reqwest::Response| async move {
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            (status, body)
        };

        let (status, page) = json(
            send(
                reqwest::Method::GET,
                "secrets?api-version=7.6&maxresults=1",
                None,
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(status, 200);
        let item = &page["value"][0];
        assert!(item.get("value").is_none());
        let name = item["id"].as_str().unwrap().rsplit('/').next().unwrap();
        assert_eq!(item["id"], format!("{base}secrets/{name}"));
        let next = page["nextLink"].as_str().unwrap();
        let prefix = format!("{base}secrets?api-version=7.6&$skiptoken=");
        assert!(
            next.starts_with(&prefix) && next.ends_with("&maxresults=1"),
            "{next}"
        );
        let token_text = &next[prefix.len()..next.len() - "&maxresults=1".len()];
        let decoded: serde_json::Value =
            serde_json::from_slice(&super::URL_SAFE_NO_PAD.decode(token_text).unwrap()).unwrap();
        assert_eq!(decoded["TargetLocation"], 0);
        assert!(decoded["NextMarker"].is_string());
        let (status, body) = json(
            send(
                reqwest::Method::GET,
                "secrets?api-version=7.6&$skiptoken=not-a-token",
                None,
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (400, &serde_json::json!("BadParameter"))
        );
        let (status, _) = json(
            send(
                reqwest::Method::GET,
                "secrets?api-version=7.6&maxresults=26",
                None,
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(status, 400);

        // PATCH with a value: the value stays.
        let (_, latest) = json(
            send(
                reqwest::Method::GET,
                "secrets/orders-prd-apikey?api-version=7.6",
                None,
            )
            .await
            .unwrap(),
        )
        .await;
        let (status, patched) = json(
            send(
                reqwest::Method::PATCH,
                "secrets/orders-prd-apikey/?api-version=7.6",
                Some(serde_json::json!({"value": "changed", "contentType": "text/plain"})),
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(status, 200);
        assert!(patched.get("value").is_none());
        assert_eq!(patched["contentType"], "text/plain");
        let (_, after) = json(
            send(
                reqwest::Method::GET,
                "secrets/orders-prd-apikey?api-version=7.6",
                None,
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(after["value"], latest["value"]);

        let (status, deleted) = json(
            send(
                reqwest::Method::DELETE,
                "secrets/orders-prd-apikey?api-version=7.6",
                None,
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(
            deleted["recoveryId"],
            format!("{base}deletedsecrets/orders-prd-apikey")
        );
        assert_eq!(deleted["id"], latest["id"]);
        assert_eq!(
            deleted["scheduledPurgeDate"].as_i64().unwrap()
                - deleted["deletedDate"].as_i64().unwrap(),
            90 * 24 * 3600
        );
        assert!(deleted.get("value").is_none());
        assert!(!h.sandbox.cast.vaults["kv-consumers-prd"]
            .latest_values()
            .contains_key("orders-prd-apikey"));

        let (status, body) = json(
            send(
                reqwest::Method::PUT,
                "secrets/orders-prd-apikey?api-version=7.6",
                Some(serde_json::json!({"value": "x"})),
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(status, 409);
        assert_eq!(
            body,
            serde_json::json!({"error": {"code": "Conflict",
            "message": "Secret orders-prd-apikey is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the secret can only be recovered or purged.",
            "innererror": {"code": "ObjectIsDeletedButRecoverable"}}})
        );
        let (status, body) = json(
            send(
                reqwest::Method::GET,
                "secrets/orders-prd-apikey/?api-version=7.6",
                None,
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (404, &serde_json::json!("SecretNotFound"))
        );
        let (status, body) = json(
            send(
                reqwest::Method::GET,
                "deletedsecrets/healthcheck-prd-apikey?api-version=7.6",
                None,
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(status, 404);
        assert_eq!(
            body,
            serde_json::json!({"error": {"code": "SecretNotFound", "message": "Deleted Secret not found: healthcheck-prd-apikey"}})
        );

        let (status, listed) = json(
            send(reqwest::Method::GET, "deletedsecrets?api-version=7.6", None)
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(listed["value"].as_array().unwrap().len(), 1);
        assert_eq!(
            listed["value"][0]["id"],
            format!("{base}secrets/orders-prd-apikey")
        );
        assert!(listed["nextLink"].is_null());

        let rsp = send(
            reqwest::Method::DELETE,
            "deletedsecrets/orders-prd-apikey?api-version=7.6",
            None,
        )
        .await
        .unwrap();
        assert_eq!(rsp.status(), 204);
        assert!(rsp.bytes().await.unwrap().is_empty());
        let (status, _) = json(
            send(
                reqwest::Method::POST,
                "deletedsecrets/orders-prd-apikey/recover?api-version=7.6",
                None,
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(status, 404);
        h.sandbox.shutdown().await;
    }

    /// Skip tokens name the first item of the next page; tokens in the standard alphabet (as
    /// the service writes them) are read too.
    #[test]
    fn skip_tokens_round_trip() {
        let token = super::encode_skiptoken("listed-07");
        assert_eq!(
            super::decode_skiptoken(&token).as_deref(),
            Some("listed-07")
        );
        let standard = base64::engine::general_purpose::STANDARD
            .encode(r#"{"NextMarker":"a>b?","TargetLocation":0}"#);
        assert!(standard.contains('+') || standard.contains('/') || standard.ends_with('='));
        assert_eq!(
            super::decode_skiptoken(&standard.replace('+', " ")).as_deref(),
            Some("a>b?")
        );
        assert_eq!(super::decode_skiptoken("bm90IGpzb24"), None);
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
