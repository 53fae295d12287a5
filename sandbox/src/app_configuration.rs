//! App Configuration (data plane), one HTTPS listener per store: get and put key-values by key
//! and label, list them with key and label filters, with ETags (`If-Match`, `If-None-Match`, 412
//! with an empty body), locks (409 problem+json), Sync-Token headers, api-version required, and
//! both authentications enforced: HMAC-SHA256 with the store's access key, and Entra ID bearer
//! tokens the sandbox issued for `https://azconfig.io` (NOTES §2).
//!
//! HMAC is checked the way the service's documentation describes it ("HMAC authentication - REST
//! API reference") and the way every official SDK signs: the date in `x-ms-date` or `Date` (the
//! former wins), in any HTTP-date form or the form the Python SDK sends, at most 15 minutes from
//! the server clock; the `Authorization` parameters joined by `&` (.NET, Java, Python,
//! JavaScript) or by `, ` (Go); signed header names in any case and order (Java signs
//! `Host;Date;x-ms-content-sha256`). Refusals carry the documented `error_description`s.

use super::double::{fault_message, reason, Double, Platform, Shown};
use super::limits::{whole_millis, whole_seconds, Limit, Rate};
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
use std::time::Duration;

// App Configuration's request quota ("Total Requests") per store, by tier. The Standard tier
// guarantees 30,000 requests per hour, read and write together (the App Configuration team in
// Azure/AppConfiguration#716, quoted at
// https://learn.microsoft.com/en-us/answers/questions/1167239/do-all-requests-to-azure-app-configuration-subtrac);
// the Free tier allows 1,000 per day (https://learn.microsoft.com/en-us/azure/azure-app-configuration/faq).
/// Standard tier, the sandbox's stores: 30,000 per hour.
const STANDARD_TIER: Rate = Rate::per_window(30_000.0, 3_600.0);
/// Free tier: 1,000 per day.
#[allow(dead_code)]
const FREE_TIER: Rate = Rate::per_window(1_000.0, 86_400.0);

/// App Configuration's 429 once the store's quota is spent: the problem body of its throttling
/// page (https://learn.microsoft.com/en-us/azure/azure-app-configuration/rest-api-throttling,
/// the reference's `appconfig/Error_429_TooManyRequests_docs.json`), `retry-after-ms` (and
/// its `x-ms-` twin, which the SDKs read too) with the wait, and `Retry-After` in seconds.
pub(crate) fn quota_exceeded(retry_after: Duration) -> Response {
    let mut response = problem(
        StatusCode::TOO_MANY_REQUESTS,
        json!({
            "type": "https://azconfig.io/errors/too-many-requests",
            "title": "Resource utilization has surpassed the assigned quota",
            "policy": "Total Requests",
            "status": 429,
        }),
    );
    let ms = whole_millis(retry_after);
    let headers = response.headers_mut();
    headers.insert("retry-after-ms", HeaderValue::from(ms));
    headers.insert("x-ms-retry-after-ms", HeaderValue::from(ms));
    headers.insert("retry-after", HeaderValue::from(whole_seconds(retry_after)));
    response
}

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
const KVSET_CONTENT_TYPE: &str = "application/vnd.microsoft.appconfig.kvset+json; charset=utf-8";
/// The media types `PutKeyValue` consumes (appconfiguration.json 2023-11-01).
const PUT_MEDIA_TYPES: [&str; 6] = [
    "application/vnd.microsoft.appconfig.kv+json",
    "application/vnd.microsoft.appconfig.kvset+json",
    "application/json",
    "text/json",
    "application/*+json",
    "application/json-patch+json",
];
/// The fields `$Select` may name.
const KV_FIELDS: [&str; 8] = [
    "key",
    "label",
    "content_type",
    "value",
    "last_modified",
    "tags",
    "locked",
    "etag",
];
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
    secret: super::secret::Secret,
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
            secret: super::secret::Secret::new(secret),
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
    pub fn snapshot(&self) -> Value {
        let inner = self.inner.lock().unwrap();
        let kvs: serde_json::Map<String, Value> = inner
            .kvs
            .iter()
            .map(|((k, l), kv)| {
                (
                    entry_name(k, l.as_deref()),
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
    platform: Arc<Platform>,
    store: Arc<Store>,
}

impl Double for Store {
    fn service(&self) -> &'static str {
        "appConfiguration"
    }

    fn router(self: Arc<Self>, platform: Arc<Platform>) -> Router {
        router(platform, self)
    }

    /// A problem+json answer: the problem types the service names (429, 400, 5xx); any other
    /// status is a problem without a type (RFC 7807's about:blank), as a refusal by the
    /// service's front end is. Throttling carries `retry-after-ms` beside `Retry-After`.
    fn fault(&self, status: StatusCode, retry_after: Option<u64>) -> Response {
        let problem_type = match status.as_u16() {
            429 => Some("too-many-requests"),
            400 => Some("invalid-argument"),
            s if s >= 500 => Some("internal-error"),
            _ => None,
        };
        let mut body = json!({"title": reason(status), "detail": fault_message(status), "status": status.as_u16()});
        if let Some(p) = problem_type {
            body["type"] = json!(format!("https://azconfig.io/errors/{p}"));
        }
        let mut response = problem(status, body);
        if let Some(seconds) = retry_after {
            let headers = response.headers_mut();
            headers.insert("retry-after", HeaderValue::from(seconds));
            headers.insert("retry-after-ms", HeaderValue::from(seconds * 1000));
        }
        response
    }

    /// Every request to the store counts ("Total Requests").
    fn limit(&self, _method: &Method, _path: &str) -> Option<Limit> {
        Some(Limit {
            scope: self.name.clone(),
            class: "totalRequests",
            rate: STANDARD_TIER,
        })
    }

    fn throttled(&self, _limit: &Limit, retry_after: Duration) -> Response {
        quota_exceeded(retry_after)
    }

    fn state(&self) -> Option<Shown> {
        Some(Shown {
            section: "appConfigurations",
            instance: Some(self.name.clone()),
            value: self.snapshot(),
        })
    }
}

/// `key`, or `key?label=l`: how `admin/state` names a key-value.
fn entry_name(key: &str, label: Option<&str>) -> String {
    match label {
        Some(l) => format!("{key}?label={l}"),
        None => key.to_string(),
    }
}

/// `t` as an IMF-fixdate (RFC 9110 §5.6.7), as the service sends `Last-Modified`.
fn imf_fixdate(t: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_default()
}

/// The routes of one store.
fn router(platform: Arc<Platform>, store: Arc<Store>) -> Router {
    let state = AcState { platform, store };
    Router::new()
        .route("/kv", get(list_kv))
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

/// The query parameters by lower-case name: the service matches their names without regard to
/// case (the Python SDK sends them lower-cased, `$select` for `$Select`).
fn query_of(uri: &axum::http::Uri) -> std::collections::HashMap<String, String> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.to_ascii_lowercase(), v.into_owned()))
        .collect()
}

/// api-version, then authentication (HMAC or bearer); every answer carries a Sync-Token.
async fn guard(State(state): State<AcState>, request: Request, next: Next) -> Response {
    let query = query_of(request.uri());
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
            time::OffsetDateTime::now_utc(),
        )
        .map_err(|reason| unauthorized(Some(&reason.to_string()), None))?;
        return Ok(Request::from_parts(parts, Body::from(bytes)));
    }
    if authorization.is_empty() {
        return Err(unauthorized(None, None));
    }
    let mut last = None;
    for audience in AUDIENCES {
        match state.platform.tokens.check(request.headers(), audience) {
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

/// The documented refusals of an HMAC-signed request (the `error_description` of the
/// `WWW-Authenticate` challenge).
#[derive(Debug, Clone, PartialEq, Eq)]
enum HmacRefusal {
    /// A `Credential`, `SignedHeaders` or `Signature` parameter is missing.
    Required(&'static str),
    /// `x-ms-date` (or `Date`), `host` or `x-ms-content-sha256` is not among the signed headers.
    RequiredSigned(&'static str),
    /// A signed header is not in the request.
    NotProvided(String),
    /// No date header, or one in no accepted form.
    InvalidDate,
    /// The date is more than 15 minutes from the server clock.
    Expired,
    InvalidCredential,
    InvalidContentHash,
    InvalidSignature,
}

impl std::fmt::Display for HmacRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Required(name) => write!(f, "{name} is required"),
            Self::RequiredSigned(name) => write!(f, "{name} is required as a signed header"),
            Self::NotProvided(name) => write!(f, "Signed request header '{name}' is not provided"),
            Self::InvalidDate => f.write_str("Invalid access token date"),
            Self::Expired => f.write_str("The access token has expired"),
            Self::InvalidCredential => f.write_str("Invalid Credential"),
            Self::InvalidContentHash => f.write_str("Invalid x-ms-content-sha256"),
            Self::InvalidSignature => f.write_str("Invalid Signature"),
        }
    }
}

/// The parameters of `HMAC-SHA256 Credential=..&SignedHeaders=..&Signature=..`, joined by `&`
/// or (as the Go SDK writes them) by `, `.
fn hmac_parameters(params: &str) -> BTreeMap<&str, &str> {
    params
        .split(['&', ','])
        .filter_map(|part| part.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect()
}

/// Verifies an HMAC-signed request against `store`'s access key at the time `now`.
fn check_hmac(
    store: &Store,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &[u8],
    params: &str,
    now: time::OffsetDateTime,
) -> Result<(), HmacRefusal> {
    use hmac::Mac;
    use sha2::Digest;
    let fields = hmac_parameters(params);
    let field = |name: &'static str| {
        fields
            .get(name)
            .copied()
            .filter(|v| !v.is_empty())
            .ok_or(HmacRefusal::Required(name))
    };
    let (credential, signed, signature) = (
        field("Credential")?,
        field("SignedHeaders")?,
        field("Signature")?,
    );
    if credential != store.credential_id {
        return Err(HmacRefusal::InvalidCredential);
    }
    let header = |name: &str| {
        headers
            .get(name.to_ascii_lowercase().as_str())
            .and_then(|v| v.to_str().ok())
    };
    let signed: Vec<String> = signed
        .split(';')
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    let is_signed = |name: &str| signed.iter().any(|s| s == name);
    if !is_signed("x-ms-date") && !is_signed("date") {
        return Err(HmacRefusal::RequiredSigned("x-ms-date"));
    }
    for required in ["host", "x-ms-content-sha256"] {
        if !is_signed(required) {
            return Err(HmacRefusal::RequiredSigned(required));
        }
    }
    let mut values = Vec::new();
    for name in &signed {
        // Over HTTP/2 the host travels as the `:authority` pseudo-header, not as `Host`.
        let value = match name.as_str() {
            "host" => header(name).or(uri.authority().map(|a| a.as_str())),
            _ => header(name),
        };
        values.push(value.ok_or_else(|| HmacRefusal::NotProvided(name.clone()))?);
    }
    // x-ms-date takes precedence over Date when both are sent.
    let date = header("x-ms-date")
        .or(header("date"))
        .and_then(parse_http_date)
        .ok_or(HmacRefusal::InvalidDate)?;
    if (now - date).abs() > CLOCK_SKEW {
        return Err(HmacRefusal::Expired);
    }
    let hash = B64.encode(sha2::Sha256::digest(body));
    if header("x-ms-content-sha256") != Some(hash.as_str()) {
        return Err(HmacRefusal::InvalidContentHash);
    }
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let to_sign = format!(
        "{}\n{path_and_query}\n{}",
        method.as_str(),
        values.join(";")
    );
    let key = B64.decode(store.secret.expose()).unwrap_or_default();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key)
        .map_err(|_| HmacRefusal::InvalidSignature)?;
    mac.update(to_sign.as_bytes());
    let expected = B64
        .decode(signature)
        .map_err(|_| HmacRefusal::InvalidSignature)?;
    mac.verify_slice(&expected)
        .map_err(|_| HmacRefusal::InvalidSignature)
}

/// Parses the date of an HMAC-signed request in every form the service accepts: the three
/// HTTP-date forms of RFC 7231 §7.1.1.1 (RFC 1123 `Tue, 01 Dec 2026 09:05:12 GMT`, the .NET,
/// Java, JavaScript and Go SDKs' form, also with a one-digit day, a numeric zone or fractional
/// seconds; RFC 850 `Tuesday, 01-Dec-26 09:05:12 GMT`; asctime `Tue Dec  1 09:05:12 2026`) and
/// the Python SDK's `Dec, 01 2026 09:05:12.123456 GMT`. A weekday, when given, must be the
/// date's. `None` for anything else.
fn parse_http_date(s: &str) -> Option<time::OffsetDateTime> {
    let mut tokens: Vec<&str> = s
        .split(|c: char| c.is_ascii_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .collect();
    let weekday = tokens.first().and_then(|t| weekday_of(t));
    if weekday.is_some() {
        tokens.remove(0);
    }
    let numeric = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let (date, clock, offset) = match tokens.as_slice() {
        // RFC 1123: 01 Dec 2026 09:05:12 GMT
        [d, m, y, hms, zone] if numeric(d) => (ymd(y, m, d)?, clock_of(hms)?, zone_of(zone)?),
        // The Python SDK: Dec 01 2026 09:05:12.123456 GMT
        [m, d, y, hms, zone] => (ymd(y, m, d)?, clock_of(hms)?, zone_of(zone)?),
        // RFC 850: 01-Dec-26 09:05:12 GMT
        [dmy, hms, zone] => {
            let mut parts = dmy.split('-');
            let (d, m, y) = (parts.next()?, parts.next()?, parts.next()?);
            if parts.next().is_some() || !zone.eq_ignore_ascii_case("GMT") {
                return None;
            }
            (ymd(y, m, d)?, clock_of(hms)?, time::UtcOffset::UTC)
        }
        // asctime: Dec 1 09:05:12 2026 (always GMT)
        [m, d, hms, y] => (ymd(y, m, d)?, clock_of(hms)?, time::UtcOffset::UTC),
        _ => return None,
    };
    if weekday.is_some_and(|w| w != date.weekday()) {
        return None;
    }
    Some(
        time::PrimitiveDateTime::new(date, clock)
            .assume_offset(offset)
            .to_offset(time::UtcOffset::UTC),
    )
}

/// `Tue` or `Tuesday`, in any case.
fn weekday_of(token: &str) -> Option<time::Weekday> {
    use time::Weekday::*;
    let names = [
        ("mon", "monday", Monday),
        ("tue", "tuesday", Tuesday),
        ("wed", "wednesday", Wednesday),
        ("thu", "thursday", Thursday),
        ("fri", "friday", Friday),
        ("sat", "saturday", Saturday),
        ("sun", "sunday", Sunday),
    ];
    let token = token.to_ascii_lowercase();
    names
        .iter()
        .find(|(short, long, _)| token == *short || token == *long)
        .map(|(_, _, day)| *day)
}

/// A date from year (four digits, or two as RFC 850 writes them: 00-49 is 20xx), month name
/// (`Dec` or `December`, any case) and day of month (one or two digits).
fn ymd(year: &str, month: &str, day: &str) -> Option<time::Date> {
    let digits = |t: &str, n: std::ops::RangeInclusive<usize>| {
        (n.contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse::<i32>().ok())
            .flatten()
    };
    let year = match year.len() {
        4 => digits(year, 4..=4)?,
        2 => {
            let yy = digits(year, 2..=2)?;
            if yy < 50 {
                2000 + yy
            } else {
                1900 + yy
            }
        }
        _ => return None,
    };
    let month = month.to_ascii_lowercase();
    let month = (1..=12u8)
        .map(|n| time::Month::try_from(n).unwrap())
        .find(|m| {
            let name = m.to_string().to_ascii_lowercase();
            month == name || month == name[..3]
        })?;
    let day = u8::try_from(digits(day, 1..=2)?).ok()?;
    time::Date::from_calendar_date(year, month, day).ok()
}

/// `HH:MM:SS` with an optional fraction of up to seven digits (.NET's precision).
fn clock_of(token: &str) -> Option<time::Time> {
    let (hms, fraction) = match token.split_once('.') {
        Some((hms, f)) if (1..=7).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()) => {
            (hms, f)
        }
        Some(_) => return None,
        None => (token, ""),
    };
    let mut parts = hms.split(':');
    let mut next = |max: u8| {
        parts
            .next()
            .filter(|p| (1..=2).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<u8>().ok())
            .filter(|v| *v <= max)
    };
    let (h, m, sec) = (next(23)?, next(59)?, next(59)?);
    if parts.next().is_some() {
        return None;
    }
    let nanos = format!("{fraction:0<9}").parse::<u32>().ok()?;
    time::Time::from_hms_nano(h, m, sec, nanos).ok()
}

/// `GMT`, `UTC`, `UT`, `Z`, or a numeric offset such as `+0000` or `-0130`.
fn zone_of(token: &str) -> Option<time::UtcOffset> {
    if ["GMT", "UTC", "UT", "Z"]
        .iter()
        .any(|z| token.eq_ignore_ascii_case(z))
    {
        return Some(time::UtcOffset::UTC);
    }
    let (sign, digits) = match token.as_bytes().first()? {
        b'+' => (1i8, &token[1..]),
        b'-' => (-1i8, &token[1..]),
        _ => return None,
    };
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i8 = digits[..2].parse().ok()?;
    let minutes: i8 = digits[2..].parse().ok()?;
    time::UtcOffset::from_hms(sign * hours, sign * minutes, 0).ok()
}

/// The label of the request: absent, or `%00`, is the null label.
fn label_of(request: &Request) -> Option<String> {
    query_of(request.uri())
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
        HeaderValue::from_str(&imf_fixdate(kv.last_modified)).unwrap(),
    );
    response
}

/// One filter of `GET /kv` (`key=` or `label=`): any, or a list of up to five exact names and
/// prefixes (`abc*`), `\` escaping `*`, `,` and `\`; for labels `%00` (NUL) is the null label.
#[derive(Debug, PartialEq, Eq)]
enum Filter {
    Any,
    /// (name or prefix, is a prefix); `None` is the null label.
    Names(Vec<(Option<String>, bool)>),
}

impl Filter {
    /// Parses a filter; the error is the 400's detail (`{filter}(position): Invalid character`).
    fn parse(raw: Option<&str>, is_label: bool) -> Result<Filter, String> {
        let Some(raw) = raw else {
            return Ok(Filter::Any);
        };
        if raw == "*" {
            return Ok(Filter::Any);
        }
        let mut names = Vec::new();
        let (mut current, mut prefix, mut escaped) = (String::new(), false, false);
        let chars: Vec<char> = raw.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            let invalid = || format!("{raw}({}): Invalid character", i + 1);
            if escaped {
                current.push(*c);
                escaped = false;
                continue;
            }
            match c {
                '\\' => escaped = true,
                ',' => {
                    names.push((current.clone(), prefix));
                    current.clear();
                    prefix = false;
                }
                // Only a trailing `*` makes a prefix.
                '*' if prefix => return Err(invalid()),
                '*' if chars.get(i + 1).is_none_or(|n| *n == ',') => prefix = true,
                '*' => return Err(invalid()),
                _ if prefix => return Err(invalid()),
                _ => current.push(*c),
            }
        }
        if escaped {
            return Err(format!("{raw}({}): Invalid character", chars.len()));
        }
        names.push((current, prefix));
        if names.len() > 5 {
            return Err(format!("{raw}: At most 5 names may be given"));
        }
        Ok(Filter::Names(
            names
                .into_iter()
                .map(|(n, p)| {
                    let null = is_label && !p && (n.is_empty() || n == "\0");
                    (if null { None } else { Some(n) }, p)
                })
                .collect(),
        ))
    }

    fn matches(&self, name: Option<&str>) -> bool {
        match self {
            Filter::Any => true,
            Filter::Names(names) => names.iter().any(|(n, prefix)| match (n, name) {
                (None, None) => true,
                (Some(n), Some(name)) if *prefix => name.starts_with(n.as_str()),
                (Some(n), Some(name)) => n == name,
                _ => false,
            }),
        }
    }
}

/// `GET /kv?key=&label=&$Select=`: the matching key-values, by key then label, in one page.
async fn list_kv(State(state): State<AcState>, request: Request) -> Response {
    let query = query_of(request.uri());
    let keys = match Filter::parse(query.get("key").map(String::as_str), false) {
        Ok(f) => f,
        Err(detail) => return invalid_argument("key", &detail),
    };
    let labels = match Filter::parse(query.get("label").map(String::as_str), true) {
        Ok(f) => f,
        Err(detail) => return invalid_argument("label", &detail),
    };
    let select: Option<Vec<String>> = query.get("$select").map(|s| {
        s.split(',')
            .map(|f| f.trim().to_ascii_lowercase())
            .collect()
    });
    if let Some(unknown) = select
        .iter()
        .flatten()
        .find(|f| !KV_FIELDS.contains(&f.as_str()))
    {
        return invalid_argument("$Select", &format!("Invalid field '{unknown}'."));
    }
    let items: Vec<Value> = state
        .store
        .inner
        .lock()
        .unwrap()
        .kvs
        .iter()
        .filter(|((k, l), _)| keys.matches(Some(k)) && labels.matches(l.as_deref()))
        .map(|((k, l), kv)| {
            let mut body = state.store.body(k, l, kv);
            if let (Some(fields), Some(map)) = (&select, body.as_object_mut()) {
                map.retain(|name, _| fields.iter().any(|f| f == name));
            }
            body
        })
        .collect();
    let mut response = (StatusCode::OK, json!({ "items": items }).to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(KVSET_CONTENT_TYPE),
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
    if !PUT_MEDIA_TYPES.contains(&media.as_str()) {
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

    /// A store's access key signing requests as the service's documentation describes
    /// ("HMAC authentication - REST API reference"), written here from that page and not
    /// shared with the product's client.
    struct AccessKey {
        id: String,
        secret: String,
    }

    impl AccessKey {
        /// `Endpoint=...;Id=...;Secret=...`.
        fn parse(connection_string: &str) -> Option<AccessKey> {
            let field = |name: &str| {
                connection_string
                    .split(';')
                    .find_map(|p| p.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
                    .map(str::to_string)
            };
            Some(AccessKey {
                id: field("Id")?,
                secret: field("Secret")?,
            })
        }

        /// `x-ms-date`, `x-ms-content-sha256` and `Authorization` for a request.
        fn sign(
            &self,
            method: &str,
            url: &url::Url,
            body: &[u8],
            date: &str,
        ) -> Vec<(&'static str, String)> {
            use base64::Engine;
            use hmac::Mac;
            use sha2::Digest;
            let b64 = base64::engine::general_purpose::STANDARD;
            let hash = b64.encode(sha2::Sha256::digest(body));
            let host = match url.port() {
                Some(port) => format!("{}:{port}", url.host_str().unwrap()),
                None => url.host_str().unwrap().to_string(),
            };
            let path_and_query = match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_string(),
            };
            let to_sign = format!("{method}\n{path_and_query}\n{date};{host};{hash}");
            let key = b64.decode(&self.secret).unwrap_or_default();
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
            mac.update(to_sign.as_bytes());
            let signature = b64.encode(mac.finalize().into_bytes());
            vec![
                ("x-ms-date", date.to_string()),
                ("x-ms-content-sha256", hash),
                (
                    "authorization",
                    format!(
                        "HMAC-SHA256 Credential={}&SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={signature}",
                        self.id
                    ),
                ),
            ]
        }
    }

    fn rfc1123(t: time::OffsetDateTime) -> String {
        super::imf_fixdate(t)
    }

    fn rfc1123_now() -> String {
        rfc1123(time::OffsetDateTime::now_utc())
    }

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
        assert_eq!(
            r.headers()["www-authenticate"],
            "HMAC-SHA256 error=\"invalid_token\" error_description=\"The access token has expired\", Bearer"
        );
        assert!(r.bytes().await.unwrap().is_empty());

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

    /// Signs like an official SDK: `date_header` carries `date`, `signed` names the signed
    /// headers (in that order and spelling), `separator` joins the Authorization parameters.
    struct SdkSigning {
        date_header: &'static str,
        date: String,
        signed: &'static str,
        separator: &'static str,
        host: &'static str,
    }

    impl SdkSigning {
        fn headers(
            &self,
            store: &super::Store,
            method: &str,
            pq: &str,
            body: &[u8],
        ) -> axum::http::HeaderMap {
            use base64::Engine;
            use hmac::Mac;
            use sha2::Digest;
            let b64 = base64::engine::general_purpose::STANDARD;
            let hash = b64.encode(sha2::Sha256::digest(body));
            let values: Vec<String> = self
                .signed
                .split(';')
                .map(|h| match h.to_ascii_lowercase().as_str() {
                    "host" => self.host.to_string(),
                    "x-ms-content-sha256" => hash.clone(),
                    _ => self.date.clone(),
                })
                .collect();
            let to_sign = format!("{method}\n{pq}\n{}", values.join(";"));
            let key = b64.decode(store.secret.expose()).unwrap();
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
            mac.update(to_sign.as_bytes());
            let signature = b64.encode(mac.finalize().into_bytes());
            let mut h = axum::http::HeaderMap::new();
            h.insert("host", self.host.parse().unwrap());
            h.insert(self.date_header, self.date.parse().unwrap());
            h.insert("x-ms-content-sha256", hash.parse().unwrap());
            let sep = self.separator;
            h.insert(
                "authorization",
                format!(
                    "HMAC-SHA256 Credential={}{sep}SignedHeaders={}{sep}Signature={signature}",
                    store.credential_id, self.signed
                )
                .parse()
                .unwrap(),
            );
            h
        }
    }

    fn check(
        store: &super::Store,
        headers: &axum::http::HeaderMap,
        body: &[u8],
        now: time::OffsetDateTime,
    ) -> Result<(), super::HmacRefusal> {
        let uri: axum::http::Uri = "/kv/Orders%3AApiKey?label=prd&api-version=2023-11-01"
            .parse()
            .unwrap();
        let params = headers["authorization"]
            .to_str()
            .unwrap()
            .strip_prefix("HMAC-SHA256 ")
            .unwrap()
            .to_string();
        super::check_hmac(
            store,
            &axum::http::Method::PUT,
            &uri,
            headers,
            body,
            &params,
            now,
        )
    }

    const PQ: &str = "/kv/Orders%3AApiKey?label=prd&api-version=2023-11-01";

    fn at(s: &str) -> time::OffsetDateTime {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
    }

    /// Each official SDK's signing, as its source writes it, is accepted; the same request with
    /// a date 16 minutes off (either way) is refused as expired.
    #[test]
    fn every_official_sdk_signing_is_accepted() {
        let store = super::Store::new("appcs-test", "https://127.0.0.1:8443");
        let now = at("2026-12-01T09:05:12Z");
        let sdks = [
            // .NET AuthenticationPolicy: DateTimeOffset.ToString("r") in Date, signed lower-case.
            (
                "dotnet",
                SdkSigning {
                    date_header: "date",
                    date: "Tue, 01 Dec 2026 09:05:12 GMT".into(),
                    signed: "date;host;x-ms-content-sha256",
                    separator: "&",
                    host: "127.0.0.1:8443",
                },
            ),
            // Java ConfigurationClientCredentials: DateTimeRfc1123 in Date, Host without the port,
            // signed as Host;Date;x-ms-content-sha256.
            (
                "java",
                SdkSigning {
                    date_header: "date",
                    date: "Tue, 01 Dec 2026 09:05:12 GMT".into(),
                    signed: "Host;Date;x-ms-content-sha256",
                    separator: "&",
                    host: "127.0.0.1",
                },
            ),
            // Python AppConfigRequestsCredentialsPolicy: "%b, %d %Y %H:%M:%S.%f GMT" in x-ms-date.
            (
                "python",
                SdkSigning {
                    date_header: "x-ms-date",
                    date: "Dec, 01 2026 09:05:12.123456 GMT".into(),
                    signed: "x-ms-date;host;x-ms-content-sha256",
                    separator: "&",
                    host: "127.0.0.1:8443",
                },
            ),
            // JavaScript appConfigKeyCredentialPolicy: Date.toUTCString() in x-ms-date.
            (
                "javascript",
                SdkSigning {
                    date_header: "x-ms-date",
                    date: "Tue, 01 Dec 2026 09:05:12 GMT".into(),
                    signed: "x-ms-date;host;x-ms-content-sha256",
                    separator: "&",
                    host: "127.0.0.1:8443",
                },
            ),
            // Go HMACPolicy: http.TimeFormat in Date, parameters joined by ", ".
            (
                "go",
                SdkSigning {
                    date_header: "date",
                    date: "Tue, 01 Dec 2026 09:05:12 GMT".into(),
                    signed: "date;host;x-ms-content-sha256",
                    separator: ", ",
                    host: "127.0.0.1:8443",
                },
            ),
        ];
        let body = br#"{"value":"v"}"#;
        for (sdk, signing) in &sdks {
            let headers = signing.headers(&store, "PUT", PQ, body);
            assert_eq!(check(&store, &headers, body, now), Ok(()), "{sdk}");
            assert_eq!(
                check(&store, &headers, body, now + time::Duration::minutes(14)),
                Ok(()),
                "{sdk}: 14 minutes is within the skew"
            );
            for off in [16, -16] {
                assert_eq!(
                    check(&store, &headers, body, now + time::Duration::minutes(off)),
                    Err(super::HmacRefusal::Expired),
                    "{sdk}: {off} minutes"
                );
            }
            // A tampered body still fails, whatever the signing shape.
            assert_eq!(
                check(&store, &headers, b"{}", now),
                Err(super::HmacRefusal::InvalidContentHash),
                "{sdk}"
            );
        }
    }

    /// `x-ms-date` wins over `Date`; the documented refusals name what is wrong.
    #[test]
    fn hmac_refusals_are_the_documented_ones() {
        use super::HmacRefusal::*;
        let store = super::Store::new("appcs-test", "https://127.0.0.1:8443");
        let now = at("2026-12-01T09:05:12Z");
        let body = b"";
        let signing = SdkSigning {
            date_header: "date",
            date: "Tue, 01 Dec 2026 09:05:12 GMT".into(),
            signed: "date;host;x-ms-content-sha256",
            separator: "&",
            host: "127.0.0.1:8443",
        };
        let mut headers = signing.headers(&store, "PUT", PQ, body);
        assert_eq!(check(&store, &headers, body, now), Ok(()));
        headers.insert(
            "x-ms-date",
            "Tue, 01 Dec 2026 08:05:12 GMT".parse().unwrap(),
        );
        assert_eq!(
            check(&store, &headers, body, now),
            Err(Expired),
            "x-ms-date takes precedence"
        );
        headers.insert("x-ms-date", "yesterday".parse().unwrap());
        assert_eq!(check(&store, &headers, body, now), Err(InvalidDate));
        headers.remove("x-ms-date");
        headers.remove("date");
        assert_eq!(
            check(&store, &headers, body, now),
            Err(NotProvided("date".into()))
        );
        for (signed, refusal) in [
            ("host;x-ms-content-sha256", RequiredSigned("x-ms-date")),
            ("date;x-ms-content-sha256", RequiredSigned("host")),
            ("date;host", RequiredSigned("x-ms-content-sha256")),
        ] {
            let s = SdkSigning {
                signed,
                ..SdkSigning {
                    date_header: "date",
                    date: signing.date.clone(),
                    signed: "",
                    separator: "&",
                    host: signing.host,
                }
            };
            assert_eq!(
                check(&store, &s.headers(&store, "PUT", PQ, body), body, now),
                Err(refusal),
                "{signed}"
            );
        }
        // HTTP/2: no Host header, the authority in the URI.
        let mut headers = signing.headers(&store, "PUT", PQ, body);
        headers.remove("host");
        let uri: axum::http::Uri = format!("https://127.0.0.1:8443{PQ}").parse().unwrap();
        let params = headers["authorization"].to_str().unwrap()["HMAC-SHA256 ".len()..].to_string();
        let h2 = |uri: &axum::http::Uri| {
            super::check_hmac(
                &store,
                &axum::http::Method::PUT,
                uri,
                &headers,
                body,
                &params,
                now,
            )
        };
        assert_eq!(h2(&uri), Ok(()));
        assert_eq!(h2(&PQ.parse().unwrap()), Err(NotProvided("host".into())));
        let mut headers = signing.headers(&store, "PUT", PQ, body);
        headers.insert(
            "authorization",
            format!(
                "HMAC-SHA256 Credential={}&SignedHeaders=date;host;x-ms-content-sha256",
                store.credential_id
            )
            .parse()
            .unwrap(),
        );
        assert_eq!(
            check(&store, &headers, body, now),
            Err(Required("Signature"))
        );
        headers.insert("authorization", "HMAC-SHA256 Credential=other&SignedHeaders=date;host;x-ms-content-sha256&Signature=AAAA".parse().unwrap());
        assert_eq!(check(&store, &headers, body, now), Err(InvalidCredential));
        assert_eq!(Expired.to_string(), "The access token has expired");
        assert_eq!(InvalidDate.to_string(), "Invalid access token date");
        assert_eq!(
            NotProvided("date".into()).to_string(),
            "Signed request header 'date' is not provided"
        );
        assert_eq!(
            RequiredSigned("host").to_string(),
            "host is required as a signed header"
        );
    }

    /// Every HTTP-date form and the Python SDK's form parse to the same instant; malformed
    /// dates, a wrong weekday and impossible values do not.
    #[test]
    fn http_dates_in_every_form() {
        let want = at("2026-12-01T09:05:12Z");
        for form in [
            "Tue, 01 Dec 2026 09:05:12 GMT",
            "Tue, 1 Dec 2026 09:05:12 GMT",
            "tue, 01 dec 2026 09:05:12 gmt",
            "01 Dec 2026 09:05:12 GMT",
            "Tue, 01 Dec 2026 09:05:12 UTC",
            "Tue, 01 Dec 2026 10:05:12 +0100",
            "Tuesday, 01-Dec-26 09:05:12 GMT",
            "Tue Dec  1 09:05:12 2026",
            "Dec, 01 2026 09:05:12 GMT",
        ] {
            assert_eq!(super::parse_http_date(form), Some(want), "{form}");
        }
        assert_eq!(
            super::parse_http_date("Dec, 01 2026 09:05:12.123456 GMT"),
            Some(want + time::Duration::microseconds(123_456))
        );
        for bad in [
            "",
            "yesterday",
            "Wed, 01 Dec 2026 09:05:12 GMT",
            "Tue, 01 Dec 2026 09:05:12",
            "Tue, 32 Dec 2026 09:05:12 GMT",
            "Tue, 01 Dec 2026 24:05:12 GMT",
            "Tue, 01 Dec 2026 09:05 GMT",
            "Tue, 01 Foo 2026 09:05:12 GMT",
            "Tue, 01 Dec 2026 09:05:12 PST",
            "2026-12-01T09:05:12Z",
            "Tuesday, 01-Dec-26 09:05:12 +0000",
        ] {
            assert_eq!(super::parse_http_date(bad), None, "{bad}");
        }
    }

    /// Key and label filters as the service defines them; a bad filter is refused.
    #[test]
    fn list_filters() {
        use super::Filter;
        let any = Filter::parse(None, false).unwrap();
        assert!(any.matches(Some("x")) && any.matches(None));
        assert_eq!(Filter::parse(Some("*"), true).unwrap(), Filter::Any);
        let f = Filter::parse(Some("Orders:*,Partner:ApiKey"), false).unwrap();
        assert!(f.matches(Some("Orders:ApiKey")) && f.matches(Some("Partner:ApiKey")));
        assert!(!f.matches(Some("Partner:ApiKeyRef")));
        let null = Filter::parse(Some("\0"), true).unwrap();
        assert!(null.matches(None) && !null.matches(Some("prd")));
        let escaped = Filter::parse(Some(r"a\,b\*"), false).unwrap();
        assert!(escaped.matches(Some("a,b*")) && !escaped.matches(Some("a,bc")));
        assert!(Filter::parse(Some("*abc"), false).is_err());
        assert!(Filter::parse(Some("a,b,c,d,e,f"), false).is_err());
    }
}
