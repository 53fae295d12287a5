//! Apigee X: the Google OAuth token endpoint (JWT-bearer grant signed with the service-account
//! key) and the developer-app key management API (`apigee.googleapis.com/v1`), with Google's
//! error bodies and int64-as-string times.
//!
//! API products have an `approvalType`, as in Apigee: a key's new association with a `manual`
//! product starts `pending` and opens nothing until
//! `POST .../keys/{key}/apiproducts/{product}?action=approve`; with an `auto` product it starts
//! `approved`. Keys carry attributes (`GoogleCloudApigeeV1Attribute`), stored as sent by
//! `keys.create` and replaced whole by `keys.updateDeveloperAppKey`. Empty repeated fields are
//! left out of answers, as Google's proto3 JSON does.

use super::double::{fault_message, with_retry_after, Double, Platform, Shown};
use super::front_end::FrontEnd;
use super::limits::{Limit, Rate};
use super::secret::Secret;
use super::tokens::Refusal;
use super::{json_response, now_ms, query_map, random_alphanumeric, Error};
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Apigee APIs "User, service account, or Apigee UI initiated": 6,000 per minute per
/// organisation (https://cloud.google.com/apigee/docs/api-platform/reference/limits, "Apigee
/// APIs", currently enforced).
const MANAGEMENT_API: Rate = Rate::per_window(6_000.0, 60.0);

/// The organisation's bucket for `path` (`/v1/organizations/{org}/...`; the OAuth token
/// endpoint is another service).
fn organization_limit(path: &str) -> Option<Limit> {
    let org = path.strip_prefix("/v1/organizations/")?.split('/').next()?;
    (!org.is_empty()).then(|| Limit {
        scope: org.to_string(),
        class: "managementApi",
        rate: MANAGEMENT_API,
    })
}

/// Google's answer to a spent quota (AIP-193): 429 `RESOURCE_EXHAUSTED` with an `ErrorInfo`
/// of reason `RATE_LIMIT_EXCEEDED` naming the service and the quota (the shape of
/// https://cloud.google.com/apis/design/errors#error_info; the metric and limit names are the
/// sandbox's). The documented answer names no delay, so none is sent: a client that does not
/// pace itself can only guess.
pub(crate) fn quota_exceeded(org: &str) -> Response {
    let body = json!({"error": {
        "code": 429,
        "message": format!("Quota exceeded for quota metric 'Apigee API requests' and limit 'Apigee API requests per minute' of service 'apigee.googleapis.com' for organization '{org}'."),
        "status": "RESOURCE_EXHAUSTED",
        "details": [{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "RATE_LIMIT_EXCEEDED",
            "domain": "googleapis.com",
            "metadata": {
                "service": "apigee.googleapis.com",
                "quota_metric": "apigee.googleapis.com/api_requests",
                "quota_limit": "ApiRequestsPerMinutePerOrganization",
                "quota_limit_value": "6000",
            },
        }],
    }});
    json_response(StatusCode::TOO_MANY_REQUESTS, body)
}

/// The only OAuth scope of the Apigee API; tokens are issued for it.
pub(crate) const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The fake Google service account whose key the sealed company details carry.
pub(crate) struct ServiceAccount {
    pub email: String,
    pub private_key_id: String,
    /// PKCS#8 PEM of the RSA key.
    pub private_key_pem: Secret,
    decoding_key: DecodingKey,
}

struct Credential {
    consumer_key: String,
    consumer_secret: String,
    issued_at: i64,
    /// Milliseconds since the epoch; -1 means never.
    expires_at: i64,
    status: String,
    api_products: Vec<(String, String)>,
    scopes: Vec<String>,
    attributes: Vec<Value>,
}

impl Credential {
    fn to_json(&self) -> Value {
        let products: Vec<Value> = self
            .api_products
            .iter()
            .map(|(p, s)| json!({"apiproduct": p, "status": s}))
            .collect();
        let mut json = json!({
            "consumerKey": self.consumer_key,
            "consumerSecret": self.consumer_secret,
            "expiresAt": self.expires_at.to_string(),
            "issuedAt": self.issued_at.to_string(),
            "status": self.status,
        });
        // proto3 JSON leaves empty repeated fields out.
        for (name, list) in [
            ("apiProducts", products),
            ("attributes", self.attributes.clone()),
            ("scopes", self.scopes.iter().map(|s| json!(s)).collect()),
        ] {
            if !list.is_empty() {
                json[name] = Value::Array(list);
            }
        }
        json
    }
}

/// An API product's `approvalType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Approval {
    /// New associations start `approved`.
    Auto,
    /// New associations start `pending` until approved.
    Manual,
}

impl Approval {
    fn initial_status(self) -> &'static str {
        match self {
            Approval::Auto => "approved",
            Approval::Manual => "pending",
        }
    }
}

struct App {
    app_id: String,
    created_at: i64,
    last_modified_at: i64,
    status: String,
    credentials: Vec<Credential>,
}

/// The Apigee organization of the sandbox: one developer, its apps and their keys.
pub(crate) struct Apigee {
    /// `https://127.0.0.1:<port>`.
    pub base_url: String,
    /// The OAuth token endpoint (`<base_url>/token`), the service account's `token_uri`.
    pub token_uri: String,
    pub organization: String,
    pub developer_email: String,
    developer_id: String,
    pub service_account: ServiceAccount,
    /// API products that exist in the organization, with their `approvalType`.
    pub products: BTreeMap<String, Approval>,
    apps: Mutex<BTreeMap<String, App>>,
}

impl Apigee {
    /// An organization with one developer and no apps; generates the service-account RSA key.
    pub fn new(base_url: &str, organization: &str, developer_email: &str) -> super::Result<Self> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
            .map_err(|e| Error::new(format!("cannot generate the RSA key: {e}")))?;
        let decoding_key = DecodingKey::from_rsa_pem(key.public_key_pem().as_bytes())
            .map_err(|e| Error::new(format!("RSA public key: {e}")))?;
        Ok(Self {
            base_url: base_url.to_string(),
            token_uri: format!("{base_url}/token"),
            organization: organization.to_string(),
            developer_email: developer_email.to_string(),
            developer_id: uuid::Uuid::new_v4().to_string(),
            service_account: ServiceAccount {
                email: format!("key-rotator@{organization}.iam.gserviceaccount.com"),
                private_key_id: uuid::Uuid::new_v4().simple().to_string(),
                private_key_pem: Secret::new(key.serialize_pem()),
                decoding_key,
            },
            // The health check's product needs an administrator's approval for each new key
            // (the renewal in the demo's first run meets it); the others approve by themselves.
            products: BTreeMap::from([
                ("healthcheck-product".into(), Approval::Manual),
                ("orders-product".into(), Approval::Auto),
                ("reference-product".into(), Approval::Auto),
            ]),
            apps: Mutex::new(BTreeMap::new()),
        })
    }

    /// Seeds an approved app.
    pub fn add_app(&self, name: &str) {
        let now = now_ms();
        self.apps.lock().unwrap().insert(
            name.to_string(),
            App {
                app_id: uuid::Uuid::new_v4().to_string(),
                created_at: now,
                last_modified_at: now,
                status: "approved".into(),
                credentials: Vec::new(),
            },
        );
    }

    /// Seeds an approved key on `app` with `products` (`expires_at` in ms, -1 for never).
    pub fn add_key(
        &self,
        app: &str,
        key: &str,
        issued_at: i64,
        expires_at: i64,
        products: &[&str],
    ) {
        if let Some(app) = self.apps.lock().unwrap().get_mut(app) {
            app.credentials.push(Credential {
                consumer_key: key.to_string(),
                consumer_secret: random_alphanumeric(16),
                issued_at,
                expires_at,
                status: "approved".into(),
                api_products: products
                    .iter()
                    .map(|p| (p.to_string(), "approved".into()))
                    .collect(),
                scopes: Vec::new(),
                attributes: Vec::new(),
            });
        }
    }

    /// Every app with its credentials (keys included), for `admin/state`.
    pub fn snapshot(&self) -> Value {
        let apps = self.apps.lock().unwrap();
        let apps: serde_json::Map<String, Value> = apps
            .iter()
            .map(|(name, app)| {
                let creds: Vec<Value> = app.credentials.iter().map(Credential::to_json).collect();
                (
                    name.clone(),
                    json!({"status": app.status, "credentials": creds}),
                )
            })
            .collect();
        let products: serde_json::Map<String, Value> = self
            .products
            .iter()
            .map(|(name, approval)| {
                let kind = match approval {
                    Approval::Auto => "auto",
                    Approval::Manual => "manual",
                };
                (name.clone(), json!({"approvalType": kind}))
            })
            .collect();
        json!({"organization": self.organization, "developerEmail": self.developer_email, "apiProducts": products, "apps": apps})
    }

    fn app_json(&self, name: &str, app: &App) -> Value {
        let creds: Vec<Value> = app.credentials.iter().map(Credential::to_json).collect();
        json!({
            "appFamily": "default",
            "appId": app.app_id,
            "attributes": [],
            "callbackUrl": "",
            "createdAt": app.created_at.to_string(),
            "credentials": creds,
            "developerId": self.developer_id,
            "lastModifiedAt": app.last_modified_at.to_string(),
            "name": name,
            "scopes": [],
            "status": app.status,
        })
    }
}

/// A Google API error body.
fn google_error(status: StatusCode, message: &str) -> Response {
    let status_name = match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ALREADY_EXISTS",
        _ => "INTERNAL",
    };
    json_response(
        status,
        json!({"error": {"code": status.as_u16(), "message": message, "status": status_name}}),
    )
}

/// A Google OAuth error body.
fn oauth_error(error: &str, description: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        json!({"error": error, "error_description": description}),
    )
}

impl Double for Apigee {
    fn service(&self) -> &'static str {
        "apigee"
    }

    /// `*.googleapis.com` sits behind Google's front end.
    fn front_end(&self) -> FrontEnd {
        FrontEnd::Google
    }

    fn router(self: Arc<Self>, platform: Arc<Platform>) -> Router {
        router(Ctx {
            platform,
            apigee: self,
        })
    }

    /// Google's error body with the canonical status names (AIP-193).
    fn fault(&self, status: StatusCode, retry_after: Option<u64>) -> Response {
        let name = match status.as_u16() {
            400 => "INVALID_ARGUMENT",
            401 => "UNAUTHENTICATED",
            403 => "PERMISSION_DENIED",
            404 => "NOT_FOUND",
            409 => "ALREADY_EXISTS",
            429 => "RESOURCE_EXHAUSTED",
            503 => "UNAVAILABLE",
            504 => "DEADLINE_EXCEEDED",
            s if s < 500 => "FAILED_PRECONDITION",
            _ => "INTERNAL",
        };
        let body = json!({"error": {"code": status.as_u16(), "message": fault_message(status), "status": name}});
        with_retry_after(json_response(status, body), retry_after)
    }

    fn limit(&self, _method: &axum::http::Method, path: &str) -> Option<Limit> {
        organization_limit(path)
    }

    fn throttled(&self, limit: &Limit, _retry_after: Duration) -> Response {
        quota_exceeded(&limit.scope)
    }

    fn state(&self) -> Option<Shown> {
        Some(Shown {
            section: "apigee",
            instance: None,
            value: self.snapshot(),
        })
    }
}

#[derive(Clone)]
struct Ctx {
    platform: Arc<Platform>,
    apigee: Arc<Apigee>,
}

/// The token endpoint and the management API.
fn router(ctx: Ctx) -> Router {
    let app = "/v1/organizations/{org}/developers/{developer}/apps/{app}";
    let management = Router::new()
        .route(app, get(get_app).post(app_action))
        .route(&format!("{app}/keys"), post(create_key))
        .route(&format!("{app}/keys/create"), post(create_key))
        .route(
            &format!("{app}/keys/{{key}}"),
            get(get_key).post(update_key).delete(delete_key),
        )
        .route(
            &format!("{app}/keys/{{key}}/apiproducts/{{product}}"),
            post(update_key_product).delete(delete_key_product),
        )
        .route_layer(from_fn_with_state(ctx.clone(), require_token));
    Router::new()
        .route("/token", post(token))
        .merge(management)
        .with_state(ctx)
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    #[serde(default)]
    scope: Option<String>,
    iat: i64,
    exp: i64,
}

/// The audience Google's documentation gives for a service-account assertion.
const GOOGLE_TOKEN_AUDIENCE: &str = "https://oauth2.googleapis.com/token";

async fn token(State(ctx): State<Ctx>, body: Bytes) -> Response {
    let apigee = &ctx.apigee;
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    match form.get("grant_type").map(String::as_str) {
        Some(JWT_BEARER) => {}
        Some(other) => {
            return oauth_error(
                "unsupported_grant_type",
                &format!("Invalid grant_type: {other}"),
            )
        }
        None => return oauth_error("unsupported_grant_type", "Invalid grant_type: "),
    }
    let Some(assertion) = form.get("assertion") else {
        return oauth_error("invalid_request", "Missing required parameter: assertion");
    };
    let mut validation = Validation::new(Algorithm::RS256);
    // Google's token endpoint takes its own well-known URL as the audience whatever URL the
    // assertion was posted to (google-auth always signs that one, the oracle found), and the
    // URL it was posted to.
    validation.set_audience(&[apigee.token_uri.as_str(), GOOGLE_TOKEN_AUDIENCE]);
    validation.set_issuer(&[&apigee.service_account.email]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
    let claims = match jsonwebtoken::decode::<Claims>(
        assertion,
        &apigee.service_account.decoding_key,
        &validation,
    ) {
        Ok(data) => data.claims,
        Err(e) => {
            use jsonwebtoken::errors::ErrorKind as K;
            let description = match e.kind() {
                K::InvalidSignature => "Invalid JWT Signature.".to_string(),
                K::ExpiredSignature | K::ImmatureSignature => "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.".to_string(),
                K::InvalidAudience => format!("Invalid JWT: Failed audience check. The right audience is {}", apigee.token_uri),
                K::InvalidIssuer => "Invalid grant: account not found".to_string(),
                _ => "Invalid JWT.".to_string(),
            };
            return oauth_error("invalid_grant", &description);
        }
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if claims.exp - claims.iat > 3600 || claims.iat > now + 300 || claims.exp < claims.iat {
        return oauth_error("invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.");
    }
    debug_assert_eq!(claims.iss, apigee.service_account.email);
    let has_scope = claims
        .scope
        .as_deref()
        .is_some_and(|s| s.split_whitespace().any(|s| s == SCOPE));
    if !has_scope {
        return oauth_error(
            "invalid_scope",
            "Invalid OAuth scope or ID token audience provided.",
        );
    }
    let (access_token, _) = ctx
        .platform
        .tokens
        .issue(SCOPE, &apigee.service_account.email);
    json_response(
        StatusCode::OK,
        json!({"access_token": access_token, "expires_in": 3599, "token_type": "Bearer"}),
    )
}

async fn require_token(State(ctx): State<Ctx>, request: Request, next: Next) -> Response {
    match ctx.platform.tokens.check(request.headers(), SCOPE) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            let message = match refusal {
                Refusal::Missing => "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
                _ => "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
            };
            let mut response = google_error(StatusCode::UNAUTHORIZED, message);
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"https://accounts.google.com/\""),
            );
            response
        }
    }
}

/// Runs `f` on the addressed app, or answers Google's 404.
fn with_app(
    ctx: &Ctx,
    org: &str,
    developer: &str,
    app: &str,
    f: impl FnOnce(&Apigee, &mut App) -> Response,
) -> Response {
    let apigee = &ctx.apigee;
    let mut apps = apigee.apps.lock().unwrap();
    let found = (org == apigee.organization
        && developer.eq_ignore_ascii_case(&apigee.developer_email))
    .then(|| apps.get_mut(app))
    .flatten();
    match found {
        Some(found) => f(apigee, found),
        None => google_error(
            StatusCode::NOT_FOUND,
            &format!("DeveloperApp named {app} does not exist in organization {org}"),
        ),
    }
}

fn key_not_found(app: &str) -> Response {
    google_error(
        StatusCode::NOT_FOUND,
        &format!("The consumer key does not exist for DeveloperApp named {app}"),
    )
}

/// `?action=approve|revoke` with `Content-Type: application/octet-stream`: the new status.
fn action(
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Option<Result<&'static str, Response>> {
    let action = query.get("action")?;
    let status = match action.as_str() {
        "approve" => "approved",
        "revoke" => "revoked",
        other => {
            return Some(Err(google_error(
                StatusCode::BAD_REQUEST,
                &format!("Invalid action {other}; valid values are approve and revoke."),
            )))
        }
    };
    let octet = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/octet-stream"));
    if !octet {
        return Some(Err(google_error(
            StatusCode::BAD_REQUEST,
            "To approve or revoke, set the Content-Type header to application/octet-stream.",
        )));
    }
    Some(Ok(status))
}

type AppPath = Path<(String, String, String)>;
type KeyPath = Path<(String, String, String, String)>;
type KeyProductPath = Path<(String, String, String, String, String)>;

async fn get_app(State(ctx): State<Ctx>, Path((org, dev, name)): AppPath) -> Response {
    with_app(&ctx, &org, &dev, &name, |apigee, app| {
        json_response(StatusCode::OK, apigee.app_json(&name, app))
    })
}

async fn app_action(
    State(ctx): State<Ctx>,
    Path((org, dev, name)): AppPath,
    request: Request,
) -> Response {
    let query = query_map(request.uri());
    with_app(&ctx, &org, &dev, &name, |_, app| {
        match action(request.headers(), &query) {
        Some(Ok(status)) => {
            app.status = status.to_string();
            app.last_modified_at = now_ms();
            StatusCode::NO_CONTENT.into_response()
        }
        Some(Err(response)) => response,
        None => google_error(StatusCode::BAD_REQUEST, "Generating a key pair is not supported by the sandbox; create a custom key with .../keys."),
    }
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateKeyBody {
    #[serde(default)]
    consumer_key: Option<String>,
    #[serde(default)]
    consumer_secret: Option<String>,
    #[serde(default)]
    expires_in_seconds: Option<Value>,
    // Accepted and ignored, as Apigee does: a new key never has products and starts approved.
    #[serde(default, rename = "apiProducts")]
    _api_products: Option<Vec<Value>>,
    #[serde(default, rename = "status")]
    _status: Option<String>,
    // Output fields of the schema: accepted and ignored.
    #[serde(default, rename = "expiresAt")]
    _expires_at: Option<Value>,
    #[serde(default, rename = "issuedAt")]
    _issued_at: Option<Value>,
    #[serde(default)]
    attributes: Option<Vec<Value>>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
}

fn valid_key_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 2048
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| {
        google_error(
            StatusCode::BAD_REQUEST,
            &format!("Invalid JSON payload received. {e}"),
        )
    })
}

async fn create_key(
    State(ctx): State<Ctx>,
    Path((org, dev, name)): AppPath,
    body: Bytes,
) -> Response {
    let body: CreateKeyBody = match parse_json(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let expires_in: i64 = match &body.expires_in_seconds {
        None | Some(Value::Null) => -1,
        Some(Value::Number(n)) => n.as_i64().unwrap_or(i64::MIN),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(i64::MIN),
        Some(_) => i64::MIN,
    };
    if expires_in == i64::MIN {
        return google_error(
            StatusCode::BAD_REQUEST,
            "Invalid value at 'expires_in_seconds' (TYPE_INT64).",
        );
    }
    let key = body.consumer_key.unwrap_or_else(|| random_alphanumeric(32));
    let secret = body
        .consumer_secret
        .unwrap_or_else(|| random_alphanumeric(16));
    if !valid_key_part(&key) || !valid_key_part(&secret) {
        return google_error(StatusCode::BAD_REQUEST, "Consumer keys and secrets can contain letters, numbers, underscores, and hyphens, up to 2 KB each.");
    }
    let attributes = match attribute_list(body.attributes) {
        Ok(a) => a,
        Err(r) => return r,
    };
    // Consumer keys are unique across the organization, not only within the app.
    let taken = ctx
        .apigee
        .apps
        .lock()
        .unwrap()
        .values()
        .any(|a| a.credentials.iter().any(|c| c.consumer_key == key));
    with_app(&ctx, &org, &dev, &name, |_, app| {
        if taken {
            return google_error(
                StatusCode::CONFLICT,
                &format!("Consumer key already exists for DeveloperApp named {name}"),
            );
        }
        let now = now_ms();
        // All keys start approved and without API products, whatever the request says.
        let credential = Credential {
            consumer_key: key,
            consumer_secret: secret,
            issued_at: now,
            expires_at: if expires_in > 0 {
                now + expires_in * 1000
            } else {
                -1
            },
            status: "approved".into(),
            api_products: Vec::new(),
            scopes: body.scopes.unwrap_or_default(),
            attributes,
        };
        let json = credential.to_json();
        app.credentials.push(credential);
        app.last_modified_at = now;
        json_response(StatusCode::OK, json)
    })
}

async fn get_key(State(ctx): State<Ctx>, Path((org, dev, name, key)): KeyPath) -> Response {
    with_app(&ctx, &org, &dev, &name, |_, app| {
        match app.credentials.iter().find(|c| c.consumer_key == key) {
            Some(c) => json_response(StatusCode::OK, c.to_json()),
            None => key_not_found(&name),
        }
    })
}

/// `GoogleCloudApigeeV1DeveloperAppKey` as `keys.updateDeveloperAppKey` reads it: products to
/// add, the attributes (replacing all), the scopes; "none of the other fields can be updated",
/// so they are accepted and ignored. Unknown fields are refused, as proto3 JSON parsing does.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateKeyBody {
    #[serde(default)]
    api_products: Option<Vec<Value>>,
    #[serde(default)]
    attributes: Option<Vec<Value>>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default, rename = "consumerKey")]
    _consumer_key: Option<Value>,
    #[serde(default, rename = "consumerSecret")]
    _consumer_secret: Option<Value>,
    #[serde(default, rename = "expiresAt")]
    _expires_at: Option<Value>,
    #[serde(default, rename = "expiresInSeconds")]
    _expires_in_seconds: Option<Value>,
    #[serde(default, rename = "issuedAt")]
    _issued_at: Option<Value>,
    #[serde(default, rename = "status")]
    _status: Option<Value>,
}

/// A request's `attributes` as stored: `GoogleCloudApigeeV1Attribute`s (`name`, `value`, both
/// strings); anything else is refused as proto3 JSON parsing refuses it.
fn attribute_list(list: Option<Vec<Value>>) -> Result<Vec<Value>, Response> {
    let bad = || {
        google_error(
            StatusCode::BAD_REQUEST,
            "Invalid value at 'attributes': expected {\"name\": string, \"value\": string}.",
        )
    };
    let mut out = Vec::new();
    for item in list.unwrap_or_default() {
        let Value::Object(o) = &item else {
            return Err(bad());
        };
        if o.keys().any(|k| k != "name" && k != "value") {
            return Err(bad());
        }
        let name = o.get("name").and_then(Value::as_str).ok_or_else(bad)?;
        let value = match o.get("value") {
            None => "",
            Some(Value::String(v)) => v.as_str(),
            Some(_) => return Err(bad()),
        };
        out.push(json!({"name": name, "value": value}));
    }
    Ok(out)
}

/// The name in an `apiProducts` item: a plain name, or an object naming `apiproduct`.
fn product_name(item: &Value) -> Option<String> {
    match item {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o
            .get("apiproduct")
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    }
}

async fn update_key(
    State(ctx): State<Ctx>,
    Path((org, dev, name, key)): KeyPath,
    request: Request,
) -> Response {
    let query = query_map(request.uri());
    let headers = request.headers().clone();
    let action = action(&headers, &query);
    let body = match axum::body::to_bytes(request.into_body(), 1 << 20).await {
        Ok(b) => b,
        Err(_) => return google_error(StatusCode::BAD_REQUEST, "The request body is too large."),
    };
    let mut update: Option<UpdateKeyBody> = match (&action, body.is_empty()) {
        // "The Content-Type header must be set to application/octet-stream": the action is
        // the whole request, and a body (JSON, say) would be a different request.
        (Some(Ok(_)), false) => return google_error(
            StatusCode::BAD_REQUEST,
            "To approve or revoke, send an empty body with Content-Type application/octet-stream.",
        ),
        (Some(_), _) => None,
        (None, true) => Some(UpdateKeyBody::default()),
        (None, false) => match parse_json(&body) {
            Ok(b) => Some(b),
            Err(r) => return r,
        },
    };
    let attributes = match update.as_mut().map(|u| attribute_list(u.attributes.take())) {
        Some(Err(r)) => return r,
        Some(Ok(a)) => a,
        None => Vec::new(),
    };
    with_app(&ctx, &org, &dev, &name, |apigee, app| {
        let Some(credential) = app.credentials.iter_mut().find(|c| c.consumer_key == key) else {
            return key_not_found(&name);
        };
        match (action, update) {
            (Some(Err(response)), _) => response,
            (Some(Ok(status)), _) => {
                credential.status = status.to_string();
                StatusCode::NO_CONTENT.into_response()
            }
            (None, Some(update)) => {
                let mut products = Vec::new();
                for item in update.api_products.unwrap_or_default() {
                    match product_name(&item) {
                        Some(p) => products.push(p),
                        None => {
                            return google_error(
                                StatusCode::BAD_REQUEST,
                                "Invalid value at 'api_products': expected API product names.",
                            )
                        }
                    }
                }
                if let Some(unknown) = products.iter().find(|p| !apigee.products.contains_key(*p)) {
                    return google_error(
                        StatusCode::BAD_REQUEST,
                        &format!("API product {unknown} does not exist in organization {org}"),
                    );
                }
                for product in products {
                    // An existing association keeps its status; a new one starts as the
                    // product's approvalType says.
                    if !credential.api_products.iter().any(|(p, _)| *p == product) {
                        let status = apigee.products[&product].initial_status();
                        credential.api_products.push((product, status.into()));
                    }
                }
                // "This API replaces the existing attributes with those specified in the
                // request": proto3 JSON cannot tell an absent list from an empty one, so a
                // request without attributes leaves the key with none. Callers send the
                // attributes they mean to keep.
                credential.attributes = attributes;
                if let Some(scopes) = update.scopes {
                    credential.scopes = scopes;
                }
                json_response(StatusCode::OK, credential.to_json())
            }
            (None, None) => google_error(StatusCode::BAD_REQUEST, "Invalid request."),
        }
    })
}

/// `keys.apiproducts.updateDeveloperAppKeyApiProduct`: `?action=approve|revoke` sets the key's
/// association with one product. "The Content-Type header, if set, must be set to
/// application/octet-stream, with empty body"; the answer is an empty JSON object.
async fn update_key_product(
    State(ctx): State<Ctx>,
    Path((org, dev, name, key, product)): KeyProductPath,
    request: Request,
) -> Response {
    let query = query_map(request.uri());
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match axum::body::to_bytes(request.into_body(), 1 << 20).await {
        Ok(b) => b,
        Err(_) => return google_error(StatusCode::BAD_REQUEST, "The request body is too large."),
    };
    if content_type
        .as_deref()
        .is_some_and(|t| !t.starts_with("application/octet-stream"))
        || !body.is_empty()
    {
        return google_error(
            StatusCode::BAD_REQUEST,
            "To approve or revoke, send an empty body, with Content-Type application/octet-stream if any.",
        );
    }
    let status = match query.get("action").map(String::as_str) {
        Some("approve") => "approved",
        Some("revoke") => "revoked",
        other => {
            return google_error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "Invalid action {}; valid values are approve and revoke.",
                    other.unwrap_or("")
                ),
            )
        }
    };
    with_app(&ctx, &org, &dev, &name, |_, app| {
        let Some(credential) = app.credentials.iter_mut().find(|c| c.consumer_key == key) else {
            return key_not_found(&name);
        };
        match credential.api_products.iter_mut().find(|(p, _)| *p == product) {
            Some((_, s)) => {
                *s = status.to_string();
                json_response(StatusCode::OK, json!({}))
            }
            None => google_error(
                StatusCode::NOT_FOUND,
                &format!("API product {product} is not associated with the consumer key of DeveloperApp named {name}"),
            ),
        }
    })
}

/// `keys.apiproducts.delete`: removes the key's association with one product; answers the key.
async fn delete_key_product(
    State(ctx): State<Ctx>,
    Path((org, dev, name, key, product)): KeyProductPath,
) -> Response {
    with_app(&ctx, &org, &dev, &name, |_, app| {
        let Some(credential) = app.credentials.iter_mut().find(|c| c.consumer_key == key) else {
            return key_not_found(&name);
        };
        match credential.api_products.iter().position(|(p, _)| *p == product) {
            Some(i) => {
                credential.api_products.remove(i);
                json_response(StatusCode::OK, credential.to_json())
            }
            None => google_error(
                StatusCode::NOT_FOUND,
                &format!("API product {product} is not associated with the consumer key of DeveloperApp named {name}"),
            ),
        }
    })
}

async fn delete_key(State(ctx): State<Ctx>, Path((org, dev, name, key)): KeyPath) -> Response {
    with_app(&ctx, &org, &dev, &name, |_, app| {
        match app.credentials.iter().position(|c| c.consumer_key == key) {
            Some(i) => json_response(StatusCode::OK, app.credentials.remove(i).to_json()),
            None => key_not_found(&name),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::Harness;
    use super::*;

    /// A JWT assertion signed with the service-account key from the sealed-details plaintext.
    pub(crate) fn assertion(h: &Harness, private_key_pem: &str, lifetime: i64) -> String {
        let apigee = &h.sandbox.cast.apigee;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = json!({"iss": apigee.service_account.email, "scope": SCOPE, "aud": apigee.token_uri, "iat": now, "exp": now + lifetime});
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_key_pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::RS256), &claims, &key).unwrap()
    }

    async fn google_token(h: &Harness, assertion: &str) -> reqwest::Response {
        h.client
            .post(&h.sandbox.cast.apigee.token_uri)
            .form(&[("grant_type", JWT_BEARER), ("assertion", assertion)])
            .send()
            .await
            .unwrap()
    }

    /// JWT-bearer grant: a correctly signed assertion gets a token; a forged or long-lived one
    /// gets invalid_grant.
    #[tokio::test]
    async fn token_endpoint_verifies_the_assertion() {
        let h = Harness::start().await;
        let pem = h
            .sandbox
            .cast
            .apigee
            .service_account
            .private_key_pem
            .expose()
            .to_string();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let rsp = google_token(&h, &assertion(&h, &pem, 3600)).await;
        assert_eq!(rsp.status(), 200);
        let body: Value = rsp.json().await.unwrap();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3599);

        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
            .unwrap()
            .serialize_pem();
        let rsp = google_token(&h, &assertion(&h, &other, 3600)).await;
        assert_eq!(rsp.status(), 400);
        let body: Value = rsp.json().await.unwrap();
        assert_eq!(body["error"], "invalid_grant");
        assert_eq!(body["error_description"], "Invalid JWT Signature.");

        let rsp = google_token(&h, &assertion(&h, &pem, 7200)).await;
        assert_eq!(rsp.status(), 400);
        h.sandbox.shutdown().await;
    }

    /// Read an app, create a custom key, add products, approve, delete; unknown app is 404;
    /// no token is 401.
    #[tokio::test]
    async fn app_and_key_management() {
        let h = Harness::start().await;
        let apigee = &h.sandbox.cast.apigee;
        let pem = apigee.service_account.private_key_pem.expose().to_string();
        let body: Value = google_token(&h, &assertion(&h, &pem, 3600))
            .await
            .json()
            .await
            .unwrap();
        let token = body["access_token"].as_str().unwrap().to_string();
        let app_url = |app: &str| {
            format!(
                "{}/v1/organizations/{}/developers/{}/apps/{app}",
                apigee.base_url, apigee.organization, apigee.developer_email
            )
        };

        let rsp = h
            .client
            .get(app_url("APIKeyRotator_TestApp1_Sandbox"))
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 401);
        assert_eq!(
            rsp.json::<Value>().await.unwrap()["error"]["status"],
            "UNAUTHENTICATED"
        );

        let app: Value = h
            .client
            .get(app_url("APIKeyRotator_TestApp1_Sandbox"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let creds = app["credentials"].as_array().unwrap();
        assert_eq!(creds.len(), 2);
        assert!(creds
            .iter()
            .all(|c| c["expiresAt"].is_string() && c["issuedAt"].is_string()));
        assert!(!creds[1]["apiProducts"].as_array().unwrap().is_empty());

        let keys = format!("{}/keys", app_url("APIKeyRotator_TestApp1_Sandbox"));
        let new_key = random_alphanumeric(32);
        let create = json!({"consumerKey": new_key, "consumerSecret": "s3cr3t", "expiresInSeconds": "7776000"});
        let rsp = h
            .client
            .post(&keys)
            .bearer_auth(&token)
            .json(&create)
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 200);
        let created: Value = rsp.json().await.unwrap();
        assert_eq!(created["status"], "approved");
        assert!(created.get("apiProducts").is_none(), "proto3 JSON omits it");
        let expires: i64 = created["expiresAt"].as_str().unwrap().parse().unwrap();
        let issued: i64 = created["issuedAt"].as_str().unwrap().parse().unwrap();
        assert_eq!(expires - issued, 7_776_000_000);
        let rsp = h
            .client
            .post(&keys)
            .bearer_auth(&token)
            .json(&create)
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 409);
        let legacy = json!({"consumerKey": random_alphanumeric(32), "consumerSecret": "s", "expiresInSeconds": 60});
        let rsp = h
            .client
            .post(format!("{keys}/create"))
            .bearer_auth(&token)
            .json(&legacy)
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 200);
        let rsp = h
            .client
            .post(&keys)
            .bearer_auth(&token)
            .json(&json!({"consumerKey": "k", "typo": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 400);

        let key_url = format!("{keys}/{new_key}");
        let update = |body: Value| {
            h.client
                .post(&key_url)
                .bearer_auth(&token)
                .json(&body)
                .send()
        };
        // A manual product's association starts pending; the attributes are replaced.
        let rsp = update(json!({"apiProducts": ["healthcheck-product"], "attributes": [{"name": "a", "value": "1"}]}))
            .await
            .unwrap();
        assert_eq!(rsp.status(), 200);
        let updated: Value = rsp.json().await.unwrap();
        assert_eq!(
            updated["apiProducts"],
            json!([{"apiproduct": "healthcheck-product", "status": "pending"}])
        );
        assert_eq!(updated["attributes"], json!([{"name": "a", "value": "1"}]));
        // An auto product's starts approved; an existing association keeps its status; fields
        // that cannot be updated are ignored, unknown ones refused.
        let updated: Value = update(
            json!({"apiProducts": ["orders-product", "healthcheck-product"], "status": "revoked"}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_eq!(
            updated["apiProducts"],
            json!([{"apiproduct": "healthcheck-product", "status": "pending"}, {"apiproduct": "orders-product", "status": "approved"}])
        );
        assert_eq!(updated["status"], "approved");
        assert!(updated.get("attributes").is_none(), "replaced by none");
        assert_eq!(update(json!({"typo": 1})).await.unwrap().status(), 400);
        assert_eq!(
            update(json!({"attributes": [{"name": 1}]}))
                .await
                .unwrap()
                .status(),
            400
        );
        assert_eq!(
            update(json!({"apiProducts": ["no-such-product"]}))
                .await
                .unwrap()
                .status(),
            400
        );

        let product_url =
            |p: &str, action: &str| format!("{key_url}/apiproducts/{p}?action={action}");
        let rsp = h
            .client
            .post(product_url("healthcheck-product", "approve"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .header("content-length", "0")
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 400, "a Content-Type, if set, is octet-stream");
        let rsp = h
            .client
            .post(product_url("reference-product", "approve"))
            .bearer_auth(&token)
            .header("content-type", "application/octet-stream")
            .header("content-length", "0")
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 404, "not associated with the key");
        let rsp = h
            .client
            .post(product_url("healthcheck-product", "approve"))
            .bearer_auth(&token)
            .header("content-type", "application/octet-stream")
            .header("content-length", "0")
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 200);
        assert_eq!(rsp.json::<Value>().await.unwrap(), json!({}));
        let key: Value = h
            .client
            .get(&key_url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            key["apiProducts"][0],
            json!({"apiproduct": "healthcheck-product", "status": "approved"})
        );

        // The key's own revoke: octet-stream and an empty body, or a 400.
        for (content_type, body) in [("application/json", ""), ("application/octet-stream", "{}")] {
            let rsp = h
                .client
                .post(format!("{key_url}?action=revoke"))
                .bearer_auth(&token)
                .header("content-type", content_type)
                .header("content-length", body.len().to_string())
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(rsp.status(), 400, "{content_type} {body}");
        }
        let rsp = h
            .client
            .post(format!("{key_url}?action=revoke"))
            .bearer_auth(&token)
            .header("content-type", "application/octet-stream")
            .header("content-length", "0")
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 204);
        let rsp = h
            .client
            .post(format!("{key_url}?action=approve"))
            .bearer_auth(&token)
            .header("content-type", "application/octet-stream")
            .header("content-length", "0")
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 204);
        assert!(rsp.text().await.unwrap().is_empty());
        let key: Value = h
            .client
            .get(&key_url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(key["status"], "approved");

        let rsp = h
            .client
            .delete(&key_url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 200);
        assert_eq!(
            h.client
                .get(&key_url)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .status(),
            404
        );

        let rsp = h
            .client
            .get(app_url("NoSuchApp"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 404);
        let body: Value = rsp.json().await.unwrap();
        assert_eq!(
            body,
            json!({"error": {"code": 404, "message": format!("DeveloperApp named NoSuchApp does not exist in organization {}", apigee.organization), "status": "NOT_FOUND"}})
        );
        h.sandbox.shutdown().await;
    }
}
