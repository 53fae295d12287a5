//! App Configuration (data plane), one HTTPS listener per store: get and put key-values by key
//! and label, with ETags (`If-Match`, `If-None-Match`, 412 with an empty body), locks (409
//! problem+json), Sync-Token headers, api-version required, and both authentications enforced:
//! HMAC-SHA256 with the store's access key, and Entra ID bearer tokens the sandbox issued for
//! `https://azconfig.io` (NOTES §2).

use super::{query_map, Shared};
use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Audiences a bearer token may be issued for.
const AUDIENCES: [&str; 2] = ["https://azconfig.io", "https://appconfig.azure.com"];
/// Every api-version the service accepts.
const API_VERSIONS: [&str; 6] = [
    "1.0",
    "2023-10-01",
    "2023-11-01",
    "2024-09-01",
    "2024-09-01-preview",
    "2026-04-01",
];
const KV_CONTENT_TYPE: &str = "application/vnd.microsoft.appconfig.kv+json; charset=utf-8";
const PROBLEM_CONTENT_TYPE: &str = "application/problem+json; charset=utf-8";
/// How far `x-ms-date` may be from the server clock.
const CLOCK_SKEW: time::Duration = time::Duration::minutes(15);

/// One stored key-value.
#[derive(Clone)]
struct KeyValue {
    value: Option<String>,
    content_type: Option<String>,
    tags: Value,
    locked: bool,
    etag: String,
    last_modified: time::OffsetDateTime,
}

/// One store: its endpoint, access key, key-values by (key, label), and Sync-Token sequence.
pub(crate) struct Store {
    pub name: String,
    /// `https://127.0.0.1:<port>` (no trailing slash).
    pub base_url: String,
    /// The access key's id (`Id=` of the connection string).
    pub credential_id: String,
    /// The access key's base64 secret.
    secret: crate::secret::Secret,
    sync_id: String,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    kvs: BTreeMap<(String, Option<String>), KeyValue>,
    sn: u64,
    last_sync_token: Option<String>,
}

fn new_etag() -> String {
    super::random_alphanumeric(27)
}

impl Store {
    /// An empty store served at `base_url`, with a fresh read-write access key.
    pub fn new(name: &str, base_url: &str) -> Self {
        let secret = B64.encode(super::random_alphanumeric(32));
        Self {
            name: name.to_string(),
            base_url: base_url.trim_end_matches('/').to_string(),
            credential_id: format!(
                "{}-l0-s0:{}",
                &name[..name.len().min(4)],
                super::random_alphanumeric(20)
            ),
            secret: crate::secret::Secret::new(secret),
            sync_id: super::random_alphanumeric(8),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The store's connection string (`Endpoint=...;Id=...;Secret=...`).
    pub fn connection_string(&self) -> String {
        format!(
            "Endpoint={};Id={};Secret={}",
            self.base_url,
            self.credential_id,
            self.secret.expose()
        )
    }

    /// Sets a key-value (demo seeding).
    pub fn set(
        &self,
        key: &str,
        label: Option<&str>,
        value: &str,
        content_type: Option<&str>,
        locked: bool,
    ) {
        let mut inner = self.inner.lock().unwrap();
        inner.sn += 1;
        inner.kvs.insert(
            (key.to_string(), label.map(str::to_string)),
            KeyValue {
                value: Some(value.to_string()),
                content_type: content_type.map(str::to_string),
                tags: json!({}),
                locked,
                etag: new_etag(),
                last_modified: time::OffsetDateTime::now_utc(),
            },
        );
    }

    /// Every key-value by entry name (`key`, or `key?label=l`), and the last Sync-Token
    /// received, for `admin/state`.
    pub fn state(&self) -> Value {
        let inner = self.inner.lock().unwrap();
        let kvs: serde_json::Map<String, Value> = inner
            .kvs
            .iter()
            .map(|((k, l), kv)| {
                (
                    crate::targets::app_configuration::entry_name(k, l.as_deref()),
                    json!({"key": k, "label": l, "value": kv.value, "contentType": kv.content_type,
                           "locked": kv.locked, "etag": kv.etag}),
                )
            })
            .collect();
        json!({"keyValues": kvs, "lastSyncTokenReceived": inner.last_sync_token})
    }

    fn body(&self, key: &str, label: &Option<String>, kv: &KeyValue) -> Value {
        let rfc3339 = kv
            .last_modified
            .replace_nanosecond(0)
            .unwrap_or(kv.last_modified)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        json!({"etag": kv.etag, "key": key, "label": label, "content_type": kv.content_type,
               "value": kv.value, "tags": kv.tags, "locked": kv.locked, "last_modified": rfc3339})
    }
}

#[derive(Clone)]
struct AcState {
    shared: Arc<Shared>,
    store: Arc<Store>,
}

/// The routes of one store.
pub(crate) fn router(shared: Arc<Shared>, store: Arc<Store>) -> Router {
    let state = AcState { shared, store };
    Router::new()
        .route("/kv/{key}", get(get_kv).put(put_kv))
        .layer(from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// An RFC 7807 problem answer.
fn problem(status: StatusCode, body: Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
    );
    response
}

fn invalid_argument(name: &str, detail: &str) -> Response {
    problem(
        StatusCode::BAD_REQUEST,
        json!({"type": "https://azconfig.io/errors/invalid-argument",
               "title": format!("Invalid request parameter '{name}'"),
               "name": name, "detail": detail, "status": 400}),
    )
}

/// A status with an empty body (404, 412, 304).
fn empty(status: StatusCode) -> Response {
    let mut response = status.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}

/// 401 with the challenge of both schemes, and the reason on the scheme that failed.
fn unauthorized(hmac_reason: Option<&str>, bearer_reason: Option<&str>) -> Response {
    let hmac = match hmac_reason {
        Some(r) => format!("HMAC-SHA256 error=\"invalid_token\" error_description=\"{r}\""),
        None => "HMAC-SHA256".to_string(),
    };
    let bearer = match bearer_reason {
        Some(r) => format!("Bearer error=\"invalid_token\", error_description=\"{r}\""),
        None => "Bearer".to_string(),
    };
    let mut response = empty(StatusCode::UNAUTHORIZED);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_str(&format!("{hmac}, {bearer}")).unwrap(),
    );
    response
}

/// api-version, then authentication (HMAC or bearer); every answer carries a Sync-Token.
async fn guard(State(state): State<AcState>, request: Request, next: Next) -> Response {
    let query = query_map(request.uri());
    let mut response = match query.get("api-version") {
        None => invalid_argument("api-version", "The 'api-version' parameter is required."),
        Some(v) if !API_VERSIONS.contains(&v.as_str()) => invalid_argument(
            "api-version",
            &format!(
                "The requested api-version '{v}' is not supported. Supported versions: {}.",
                API_VERSIONS.join(", ")
            ),
        ),
        Some(_) => match authenticate(&state, request).await {
            Ok(request) => {
                if let Some(token) = request
                    .headers()
                    .get("sync-token")
                    .and_then(|v| v.to_str().ok())
                {
                    state.store.inner.lock().unwrap().last_sync_token = Some(token.to_string());
                }
                next.run(request).await
            }
            Err(response) => response,
        },
    };
    let sn = state.store.inner.lock().unwrap().sn;
    let headers = response.headers_mut();
    headers.insert(
        "sync-token",
        HeaderValue::from_str(&format!(
            "{}={};sn={sn}",
            state.store.sync_id,
            B64.encode(format!("{sn}"))
        ))
        .unwrap(),
    );
    headers.insert(
        "x-ms-request-id",
        HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).unwrap(),
    );
    response
}

/// Checks the request's HMAC signature or bearer token; returns the request (its body read
/// and put back) or the 401 to answer.
async fn authenticate(state: &AcState, request: Request) -> Result<Request, Response> {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if let Some(params) = authorization.strip_prefix("HMAC-SHA256 ") {
        let (parts, body) = request.into_parts();
        let bytes: Bytes = to_bytes(body, 4 * 1024 * 1024)
            .await
            .map_err(|_| invalid_argument("body", "The request body is too large."))?;
        check_hmac(
            &state.store,
            &parts.method,
            &parts.uri,
            &parts.headers,
            &bytes,
            params,
        )
        .map_err(|reason| unauthorized(Some(reason), None))?;
        return Ok(Request::from_parts(parts, Body::from(bytes)));
    }
    if authorization.is_empty() {
        return Err(unauthorized(None, None));
    }
    let mut last = None;
    for audience in AUDIENCES {
        match state.shared.tokens.check(request.headers(), audience) {
            Ok(()) => return Ok(request),
            Err(refusal) => last = Some(refusal),
        }
    }
    let reason = match last {
        Some(super::tokens::Refusal::WrongAudience(found)) => {
            format!("Invalid audience. Expected https://azconfig.io, found: {found}")
        }
        Some(super::tokens::Refusal::Missing) => "The access token is missing".to_string(),
        _ => "The access token is not valid or has expired".to_string(),
    };
    Err(unauthorized(None, Some(&reason)))
}

/// Verifies `HMAC-SHA256 Credential=..&SignedHeaders=..&Signature=..`; the reason on failure.
fn check_hmac(
    store: &Store,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &[u8],
    params: &str,
) -> Result<(), &'static str> {
    use hmac::Mac;
    use sha2::Digest;
    let mut fields = BTreeMap::new();
    for part in params.split('&') {
        let (k, v) = part.split_once('=').ok_or("Invalid Authorization header")?;
        fields.insert(k.trim(), v.trim());
    }
    let (Some(credential), Some(signed), Some(signature)) = (
        fields.get("Credential"),
        fields.get("SignedHeaders"),
        fields.get("Signature"),
    ) else {
        return Err("Invalid Authorization header");
    };
    if *credential != store.credential_id {
        return Err("Invalid Credential");
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signed: Vec<&str> = signed.split(';').collect();
    for required in ["host", "x-ms-content-sha256"] {
        if !signed.iter().any(|s| s.eq_ignore_ascii_case(required)) {
            return Err("Signed headers must include host, x-ms-date and x-ms-content-sha256");
        }
    }
    let date = header("x-ms-date")
        .or(header("date"))
        .ok_or("Missing x-ms-date")?;
    let date =
        crate::targets::app_configuration::auth::parse_rfc1123(date).ok_or("Invalid x-ms-date")?;
    if (time::OffsetDateTime::now_utc() - date).abs() > CLOCK_SKEW {
        return Err("The x-ms-date is more than 15 minutes from the server time");
    }
    let hash = B64.encode(sha2::Sha256::digest(body));
    if header("x-ms-content-sha256") != Some(hash.as_str()) {
        return Err("Invalid x-ms-content-sha256");
    }
    let mut values = Vec::new();
    for name in &signed {
        values.push(header(name).ok_or("A signed header is missing")?);
    }
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let to_sign = format!(
        "{}\n{path_and_query}\n{}",
        method.as_str(),
        values.join(";")
    );
    let key = B64.decode(store.secret.expose()).unwrap_or_default();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).map_err(|_| "Invalid key")?;
    mac.update(to_sign.as_bytes());
    let expected = B64.decode(signature).map_err(|_| "Invalid Signature")?;
    mac.verify_slice(&expected).map_err(|_| "Invalid Signature")
}

/// The label of the request: absent, or `%00`, is the null label.
fn label_of(request: &Request) -> Option<String> {
    query_map(request.uri())
        .get("label")
        .filter(|l| !l.is_empty() && l.as_str() != "\0")
        .cloned()
}

fn etag_matches(header_value: &str, etag: &str) -> bool {
    header_value.split(',').any(|v| {
        let v = v.trim();
        v == "*" || v.trim_start_matches("W/").trim_matches('"') == etag
    })
}

fn kv_response(store: &Store, key: &str, label: &Option<String>, kv: &KeyValue) -> Response {
    let mut response = (StatusCode::OK, store.body(key, label, kv).to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(KV_CONTENT_TYPE),
    );
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(&format!("\"{}\"", kv.etag)).unwrap(),
    );
    headers.insert(
        header::LAST_MODIFIED,
        HeaderValue::from_str(&crate::targets::app_configuration::auth::rfc1123(
            kv.last_modified,
        ))
        .unwrap(),
    );
    response
}

async fn get_kv(
    State(state): State<AcState>,
    Path(key): Path<String>,
    request: Request,
) -> Response {
    let label = label_of(&request);
    let found = state
        .store
        .inner
        .lock()
        .unwrap()
        .kvs
        .get(&(key.clone(), label.clone()))
        .cloned();
    let Some(kv) = found else {
        return empty(StatusCode::NOT_FOUND);
    };
    let h = |name: header::HeaderName| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if h(header::IF_NONE_MATCH).is_some_and(|v| etag_matches(&v, &kv.etag)) {
        return empty(StatusCode::NOT_MODIFIED);
    }
    if h(header::IF_MATCH).is_some_and(|v| !etag_matches(&v, &kv.etag)) {
        return empty(StatusCode::PRECONDITION_FAILED);
    }
    kv_response(&state.store, &key, &label, &kv)
}

#[derive(serde::Deserialize)]
struct PutBody {
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    tags: Option<BTreeMap<String, Option<String>>>,
    // Sent by the JS SDK and ignored by the service.
    #[serde(default)]
    #[allow(dead_code)]
    key: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    label: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    etag: Option<Value>,
}

async fn put_kv(
    State(state): State<AcState>,
    Path(key): Path<String>,
    request: Request,
) -> Response {
    let label = label_of(&request);
    let headers = request.headers().clone();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media != "application/vnd.microsoft.appconfig.kv+json" && media != "application/json" {
        return problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            json!({"type": "https://azconfig.io/errors/unsupported-media-type", "title": "Unsupported Media Type",
                   "detail": format!("The media type '{content_type}' is not supported."), "status": 415}),
        );
    }
    let Ok(bytes) = to_bytes(request.into_body(), 4 * 1024 * 1024).await else {
        return invalid_argument("body", "The request body is too large.");
    };
    let body: PutBody = match serde_json::from_slice(&bytes) {
        Ok(b) => b,
        Err(e) => {
            return invalid_argument(
                "body",
                &format!("The request body is not a valid key-value: {e}"),
            )
        }
    };
    if key == "." || key == ".." || key.chars().any(char::is_control) {
        return invalid_argument(
            "key",
            &format!("The key '{}' is not valid.", key.escape_debug()),
        );
    }
    let h = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut inner = state.store.inner.lock().unwrap();
    let id = (key.clone(), label.clone());
    let existing = inner.kvs.get(&id).cloned();
    if let Some(if_match) = h(header::IF_MATCH) {
        if !existing
            .as_ref()
            .is_some_and(|kv| etag_matches(&if_match, &kv.etag))
        {
            return empty(StatusCode::PRECONDITION_FAILED);
        }
    }
    if let Some(if_none_match) = h(header::IF_NONE_MATCH) {
        if existing
            .as_ref()
            .is_some_and(|kv| etag_matches(&if_none_match, &kv.etag))
        {
            return empty(StatusCode::PRECONDITION_FAILED);
        }
    }
    if existing.as_ref().is_some_and(|kv| kv.locked) {
        return problem(
            StatusCode::CONFLICT,
            json!({"type": "https://azconfig.io/errors/key-locked",
                   "title": format!("Modifing key '{key}' is not allowed"), "name": key,
                   "detail": "The key is read-only. To allow modification unlock it first.", "status": 409}),
        );
    }
    inner.sn += 1;
    let kv = KeyValue {
        value: body.value,
        content_type: body.content_type,
        tags: json!(body.tags.unwrap_or_default()),
        locked: false,
        etag: new_etag(),
        last_modified: time::OffsetDateTime::now_utc(),
    };
    inner.kvs.insert(id, kv.clone());
    drop(inner);
    kv_response(&state.store, &key, &label, &kv)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::Harness;
    use crate::targets::app_configuration::auth::{rfc1123, rfc1123_now, AccessKey};

    fn store_url(h: &Harness, store: &str) -> String {
        h.sandbox.info().endpoints.app_configurations[store]["endpoint"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Without api-version: 400 problem+json; without credentials: 401 with both challenges.
    #[tokio::test]
    async fn api_version_and_authentication_are_required() {
        let h = Harness::start().await;
        let base = store_url(&h, "appcs-consumers");
        let r = h.client.get(format!("{base}/kv/x")).send().await.unwrap();
        assert_eq!(r.status(), 400);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/problem+json"));
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["type"], "https://azconfig.io/errors/invalid-argument");
        assert_eq!(body["name"], "api-version");
        let r = h
            .client
            .get(format!("{base}/kv/x?api-version=2099-01-01"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        for v in [
            "1.0",
            "2023-10-01",
            "2023-11-01",
            "2024-09-01",
            "2026-04-01",
        ] {
            let r = h
                .client
                .get(format!("{base}/kv/x?api-version={v}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401, "{v}");
            assert_eq!(r.headers()["www-authenticate"], "HMAC-SHA256, Bearer");
        }
        // A token for another audience is refused with the reason on Bearer.
        let token = h.token("https://vault.azure.net").await;
        let r = h
            .client
            .get(format!("{base}/kv/x?api-version=2023-11-01"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let challenge = r.headers()["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.starts_with("HMAC-SHA256, Bearer error=\"invalid_token\""),
            "{challenge}"
        );
        // One for azconfig.io is accepted: the key is missing, 404 with an empty body.
        let token = h.token("https://azconfig.io").await;
        let r = h
            .client
            .get(format!("{base}/kv/x?api-version=2023-11-01"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        assert!(r.headers().contains_key("sync-token"));
        assert!(r.bytes().await.unwrap().is_empty());
        h.sandbox.shutdown().await;
    }

    /// A signed request passes; a wrong signature, a stale date or a body that does not match
    /// its hash is refused with the reason.
    #[tokio::test]
    async fn hmac_is_enforced() {
        let h = Harness::start().await;
        let base = store_url(&h, "appcs-partners");
        let cs = h.sandbox.info().endpoints.app_configurations["appcs-partners"]
            ["connectionString"]
            .as_str()
            .unwrap()
            .to_string();
        let key = AccessKey::parse(&cs).unwrap();
        let url: url::Url = format!("{base}/kv/hmac-test?label=x&api-version=2023-11-01")
            .parse()
            .unwrap();
        let body = br#"{"value":"v1"}"#.to_vec();
        let send = |headers: Vec<(&'static str, String)>, body: Vec<u8>| {
            let mut r = h
                .client
                .put(url.clone())
                .header(
                    "content-type",
                    "application/vnd.microsoft.appconfig.kv+json",
                )
                .body(body);
            for (k, v) in headers {
                r = r.header(k, v);
            }
            r.send()
        };
        let ok = send(key.sign("PUT", &url, &body, &rfc1123_now()), body.clone())
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        assert!(ok.headers()["etag"].to_str().unwrap().starts_with('"'));

        let signed = key.sign("PUT", &url, &body, &rfc1123_now());
        let r = send(signed, br#"{"value":"v2"}"#.to_vec()).await.unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("Invalid x-ms-content-sha256"));

        let stale = rfc1123(time::OffsetDateTime::now_utc() - time::Duration::minutes(16));
        let r = send(key.sign("PUT", &url, &body, &stale), body.clone())
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("15 minutes"));

        let other = AccessKey::parse(&cs.replace("Secret=", "Secret=QUJD")).unwrap();
        let r = send(other.sign("PUT", &url, &body, &rfc1123_now()), body.clone())
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.headers()["www-authenticate"],
            "HMAC-SHA256 error=\"invalid_token\" error_description=\"Invalid Signature\", Bearer"
        );
        h.sandbox.shutdown().await;
    }

    /// If-Match / If-None-Match: a stale ETag or creating what exists is 412 with an empty body;
    /// a locked key is 409 problem+json.
    #[tokio::test]
    async fn etags_and_locks() {
        let h = Harness::start().await;
        let base = store_url(&h, "appcs-consumers");
        let token = h.token("https://azconfig.io").await;
        let put = |key: &str, cond: (&'static str, String)| {
            h.client
                .put(format!("{base}/kv/{key}?api-version=2023-11-01"))
                .bearer_auth(&token)
                .header(
                    "content-type",
                    "application/vnd.microsoft.appconfig.kv+json",
                )
                .header(cond.0, cond.1)
                .body(r#"{"value":"x"}"#)
                .send()
        };
        let r = put("fresh", ("if-none-match", "*".into())).await.unwrap();
        assert_eq!(r.status(), 200);
        let etag = r.headers()["etag"].to_str().unwrap().to_string();
        let r = put("fresh", ("if-none-match", "*".into())).await.unwrap();
        assert_eq!(r.status(), 412);
        assert!(r.bytes().await.unwrap().is_empty());
        assert_eq!(
            put("fresh", ("if-match", etag.clone()))
                .await
                .unwrap()
                .status(),
            200
        );
        assert_eq!(
            put("fresh", ("if-match", etag)).await.unwrap().status(),
            412
        );
        let r = put("Locked:ApiKey", ("if-match", "*".into()))
            .await
            .unwrap();
        assert_eq!(r.status(), 409);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["type"], "https://azconfig.io/errors/key-locked");
        h.sandbox.shutdown().await;
    }
}
