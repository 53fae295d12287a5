//! Azure Resource Manager, Microsoft.Web app settings: sites (Function Apps, Web Apps), their
//! deployment slots, and static sites, in subscriptions and resource groups.
//!
//! Enforced as ARM does: a bearer token for the management audience (or, as a custom cloud's
//! clients ask for it, for this endpoint's own URL), `api-version` on every request, the
//! whole-set-replacing PUT. Every successful app-settings PUT counts one restart of the site,
//! visible in `admin/state` under `resourceManager.sites`. Errors use the reference's bodies:
//! ARM's `{"error":{...}}` (ResourceNotFound, AuthorizationFailed, ...) and App Service's
//! PascalCase shape (a missing slot).

use super::double::{fault_message, with_retry_after, Double, Platform, Shown};
use super::limits::{whole_seconds, Limit, Rate};
use super::tokens::Refusal;
use super::{json_response, query_map};
use axum::body::to_bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

// Resource Manager's throttling: a regional token bucket per subscription, per principal and
// per operation type (the sandbox is one region, and its callers one principal each):
// https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/request-limits-and-throttling
// ("Regional throttling and token bucket algorithm": bucket size, refill rate per second).
/// Subscription reads: a bucket of 250, 25 per second.
const SUBSCRIPTION_READS: Rate = Rate {
    capacity: 250.0,
    per_second: 25.0,
};
/// Subscription writes: a bucket of 200, 10 per second. A POST action (`.../appsettings/list`)
/// counts as a write: its answers carry `x-ms-ratelimit-remaining-subscription-writes`
/// (azure-sdk-for-java#1389: `listKeys`, a POST, throttled as a write).
const SUBSCRIPTION_WRITES: Rate = Rate {
    capacity: 200.0,
    per_second: 10.0,
};
/// Subscription deletes: a bucket of 200, 10 per second.
const SUBSCRIPTION_DELETES: Rate = Rate {
    capacity: 200.0,
    per_second: 10.0,
};

/// The bucket of `method path`: the subscription in the path, the class by method.
fn arm_limit(method: &Method, path: &str) -> Option<Limit> {
    let mut segments = path.trim_start_matches('/').split('/');
    if !segments.next()?.eq_ignore_ascii_case("subscriptions") {
        return None;
    }
    let subscription = segments.next().filter(|s| !s.is_empty())?;
    let (class, rate) = match *method {
        Method::GET | Method::HEAD => ("reads", SUBSCRIPTION_READS),
        Method::DELETE => ("deletes", SUBSCRIPTION_DELETES),
        _ => ("writes", SUBSCRIPTION_WRITES),
    };
    Some(Limit {
        scope: subscription.to_ascii_lowercase(),
        class,
        rate,
    })
}

/// ARM's answer to a request over its subscription's bucket: `SubscriptionRequestsThrottled`
/// (the code and message of azure-sdk-for-java#1389, in the token-bucket wording of the
/// request-limits page), `Retry-After` in seconds, and the remaining count (0) of the class.
fn subscription_throttled(limit: &Limit, retry_after: Duration) -> Response {
    let seconds = whole_seconds(retry_after);
    let operation = limit.class.trim_end_matches('s');
    let body = json!({"error": {
        "code": "SubscriptionRequestsThrottled",
        "message": format!(
            "Number of '{operation}' requests for subscription '{}' exceeded. Please try again after '{seconds}' seconds after additional tokens are available. Refer to https://aka.ms/arm-throttling for additional information.",
            limit.scope
        ),
    }});
    let mut response = with_retry_after(
        json_response(StatusCode::TOO_MANY_REQUESTS, body),
        Some(seconds),
    );
    remaining_header(limit, 0, &mut response);
    response
}

/// `x-ms-ratelimit-remaining-subscription-<class>: remaining`, as ARM sends on every answer.
fn remaining_header(limit: &Limit, remaining: u64, response: &mut Response) {
    if let Ok(name) = header::HeaderName::from_bytes(
        format!("x-ms-ratelimit-remaining-subscription-{}", limit.class).as_bytes(),
    ) {
        response
            .headers_mut()
            .insert(name, HeaderValue::from(remaining));
    }
}

/// The token audience ARM requires.
const AUDIENCE: &str = "https://management.azure.com";

/// One site, slot or static site.
struct Site {
    /// The canonical resource ID.
    id: String,
    /// `functionapp`, `app` or `staticsite`.
    kind: &'static str,
    settings: Map<String, Value>,
    restarts: u64,
    reference_refreshes: u64,
    /// Answers 403 AuthorizationFailed to everything (a site the rotator has no role on).
    forbidden: bool,
}

/// The Microsoft.Web resources the double holds, by lower-case resource ID.
pub(crate) struct ResourceManager {
    /// `https://127.0.0.1:<port>` (`AZURE_RESOURCE_MANAGER_ENDPOINT`).
    pub base_url: String,
    sites: Mutex<BTreeMap<String, Site>>,
    writes: Mutex<u64>,
}

/// What a seeded site is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SiteType {
    /// `Microsoft.Web/sites`, kind `functionapp`.
    FunctionApp,
    /// `Microsoft.Web/sites`, kind `app`.
    WebApp,
    /// `Microsoft.Web/staticSites`.
    StaticSite,
}

/// The resource ID of a site (`slot` given: of its slot) or static site.
pub(crate) fn resource_id(
    sub: &str,
    rg: &str,
    ty: &SiteType,
    name: &str,
    slot: Option<&str>,
) -> String {
    let provider = match ty {
        SiteType::StaticSite => "staticSites",
        _ => "sites",
    };
    let mut id = format!(
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Web/{provider}/{name}"
    );
    if let Some(slot) = slot {
        id.push_str(&format!("/slots/{slot}"));
    }
    id
}

impl ResourceManager {
    /// Adds (or replaces) a site, slot or static site with `settings`.
    pub fn add_site(
        &self,
        sub: &str,
        rg: &str,
        ty: SiteType,
        name: &str,
        slot: Option<&str>,
        settings: &[(&str, &str)],
    ) {
        let id = resource_id(sub, rg, &ty, name, slot);
        let kind = match ty {
            SiteType::FunctionApp => "functionapp",
            SiteType::WebApp => "app",
            SiteType::StaticSite => "staticsite",
        };
        let settings = settings
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        self.sites.lock().unwrap().insert(
            id.to_ascii_lowercase(),
            Site {
                id,
                kind,
                settings,
                restarts: 0,
                reference_refreshes: 0,
                forbidden: false,
            },
        );
    }

    /// Makes the site answer 403 AuthorizationFailed to every request.
    pub fn forbid(&self, sub: &str, rg: &str, ty: SiteType, name: &str) {
        let id = resource_id(sub, rg, &ty, name, None).to_ascii_lowercase();
        for (key, site) in self.sites.lock().unwrap().iter_mut() {
            if key == &id || key.starts_with(&format!("{id}/")) {
                site.forbidden = true;
            }
        }
    }

    /// `{"sites": {"name[/slots/slot]": {"id", "kind", "appSettings", "restarts",
    /// "referenceRefreshes", "forbidden"}}}`.
    pub fn snapshot(&self) -> Value {
        let sites: Map<String, Value> = self
            .sites
            .lock()
            .unwrap()
            .values()
            .map(|s| {
                let (_, short) =
                    s.id.split_once("/providers/Microsoft.Web/")
                        .unwrap_or(("", &s.id));
                let short = short.split_once('/').map_or(short, |(_, rest)| rest);
                (
                    short.to_string(),
                    json!({"id": s.id, "kind": s.kind, "appSettings": s.settings,
                           "restarts": s.restarts, "referenceRefreshes": s.reference_refreshes,
                           "forbidden": s.forbidden}),
                )
            })
            .collect();
        json!({ "sites": sites })
    }
}

impl ResourceManager {
    /// No resources, served at `base_url`.
    pub fn new(base_url: &str) -> Self {
        Self {
            base_url: base_url.to_string(),
            sites: Mutex::default(),
            writes: Mutex::default(),
        }
    }
}

impl Double for ResourceManager {
    fn service(&self) -> &'static str {
        "resourceManager"
    }

    /// ARM's routes.
    fn router(self: Arc<Self>, platform: Arc<Platform>) -> Router {
        let ctx = Ctx {
            platform,
            resource_manager: self,
        };
        Router::new().fallback(handle).with_state(ctx)
    }

    /// App Service's PascalCase body when throttled (the reference's 429, with the
    /// remaining-writes header), ARM's own `AuthorizationFailed` for 403, ARM's shape otherwise.
    fn fault(&self, status: StatusCode, retry_after: Option<u64>) -> Response {
        let message = fault_message(status);
        let body = match status {
            StatusCode::TOO_MANY_REQUESTS => json!({
                "Code": "429", "Message": message, "Target": null,
                "Details": [{"Message": message}, {"Code": "429"},
                            {"ErrorEntity": {"ExtendedCode": "51025", "Code": "429", "Message": message}}]
            }),
            StatusCode::FORBIDDEN => {
                json!({"error": {"code": "AuthorizationFailed", "message": message}})
            }
            _ => {
                let code = super::double::reason(status).replace(' ', "");
                json!({"error": {"code": code, "message": message}})
            }
        };
        let mut response = with_retry_after(json_response(status, body), retry_after);
        if retry_after.is_some() {
            response.headers_mut().insert(
                "x-ms-ratelimit-remaining-subscription-writes",
                HeaderValue::from(0u64),
            );
        }
        response
    }

    fn limit(&self, method: &Method, path: &str) -> Option<Limit> {
        arm_limit(method, path)
    }

    fn throttled(&self, limit: &Limit, retry_after: Duration) -> Response {
        subscription_throttled(limit, retry_after)
    }

    fn admitted(&self, limit: &Limit, remaining: u64, response: &mut Response) {
        remaining_header(limit, remaining, response);
    }

    fn state(&self) -> Option<Shown> {
        Some(Shown {
            section: "resourceManager",
            instance: None,
            value: self.snapshot(),
        })
    }
}

#[derive(Clone)]
struct Ctx {
    platform: Arc<Platform>,
    resource_manager: Arc<ResourceManager>,
}

fn arm_error(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(status, json!({"error": {"code": code, "message": message}}))
}

/// App Service's PascalCase error body.
fn legacy_error(status: StatusCode, code: &str, template: &str, params: &[&str]) -> Response {
    let mut message = template.to_string();
    for (i, p) in params.iter().enumerate() {
        message = message.replace(&format!("{{{i}}}"), p);
    }
    json_response(
        status,
        json!({"Code": code, "Message": message, "Target": null,
               "Details": [{"Message": message}, {"Code": code},
                           {"ErrorEntity": {"ExtendedCode": "51004", "MessageTemplate": template,
                                            "Parameters": params, "Code": code, "Message": message}}],
               "Innererror": null}),
    )
}

fn unauthorized(platform: &Platform, refusal: Refusal) -> Response {
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
        platform.tenant.authority, platform.tenant.id
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_str(&challenge).unwrap(),
    );
    response
}

/// `YYYY-MM-DD` with an optional `-preview` (every version ARM serves has that form).
fn api_version_ok(v: &str) -> bool {
    let date = v.strip_suffix("-preview").unwrap_or(v);
    date.len() == 10
        && date.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        })
        && date.as_bytes()[0] == b'2'
}

/// What a request addresses.
enum Op {
    List,
    Replace,
    Refresh,
}

/// Splits `/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Web/(sites/{n}[/slots/{x}]|staticSites/{n})/...`
/// into (resource ID, operation); literals compare case-insensitively as in ARM.
fn route(path: &str, method: &Method) -> Option<(String, String, String, Op)> {
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    let eq = |i: usize, lit: &str| seg.get(i).is_some_and(|s| s.eq_ignore_ascii_case(lit));
    if !(eq(0, "subscriptions")
        && eq(2, "resourceGroups")
        && eq(4, "providers")
        && eq(5, "Microsoft.Web"))
    {
        return None;
    }
    let (sub, rg) = (seg[1].to_string(), seg.get(3)?.to_string());
    let (end, rest): (usize, &[&str]) = if eq(6, "sites") && eq(8, "slots") && seg.len() > 10 {
        (10, &seg[10..])
    } else if (eq(6, "sites") || eq(6, "staticSites")) && seg.len() > 8 {
        (8, &seg[8..])
    } else {
        return None;
    };
    let id = format!("/{}", seg[..end].join("/"));
    let lower: Vec<String> = rest.iter().map(|s| s.to_ascii_lowercase()).collect();
    let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
    let static_site = eq(6, "staticSites");
    let op = match (lower.as_slice(), method, static_site) {
        (["config", "appsettings", "list"], &Method::POST, false) => Op::List,
        (["listappsettings"], &Method::POST, true) => Op::List,
        (["config", "appsettings"], &Method::PUT, _) => Op::Replace,
        (["config", "configreferences", "appsettings", "refresh"], &Method::POST, false) => {
            Op::Refresh
        }
        _ => return None,
    };
    Some((id, sub, rg, op))
}

async fn handle(State(ctx): State<Ctx>, request: Request) -> Response {
    // A custom cloud's client asks for a token for the endpoint itself.
    let own = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| format!("https://{h}"))
        .unwrap_or_default();
    let tokens = &ctx.platform.tokens;
    if let Err(refusal) = tokens.check(request.headers(), AUDIENCE) {
        if own.is_empty() || tokens.check(request.headers(), &own).is_err() {
            return unauthorized(&ctx.platform, refusal);
        }
    }
    // The caller, as ARM names it in AuthorizationFailed (the token's object ID).
    let caller = tokens.principal(request.headers()).unwrap_or_default();
    let query = query_map(request.uri());
    match query.get("api-version") {
        None => {
            return arm_error(
                StatusCode::BAD_REQUEST,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        }
        Some(v) if !api_version_ok(v) => {
            return arm_error(
                StatusCode::BAD_REQUEST,
                "InvalidApiVersionParameter",
                &format!("The api-version '{v}' is invalid. The supported versions are '2026-03-15,2025-05-01,2025-03-01,2024-11-01,2024-04-01,2023-12-01,2023-01-01,2022-09-01,2022-03-01'."),
            )
        }
        Some(_) => {}
    }
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    let Some((id, sub, rg, op)) = route(&path, &method) else {
        return arm_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            &format!("The Resource '{path}' was not found."),
        );
    };
    let body = to_bytes(request.into_body(), 4 << 20)
        .await
        .unwrap_or_default();
    let arm = &ctx.resource_manager;
    let mut sites = arm.sites.lock().unwrap();
    let key = id.to_ascii_lowercase();
    let Some(site) = sites.get_mut(&key) else {
        let sub_prefix = format!("/subscriptions/{}/", sub.to_ascii_lowercase());
        let rg_prefix = format!("{sub_prefix}resourcegroups/{}/", rg.to_ascii_lowercase());
        let known = |prefix: &str| sites.keys().any(|k| k.starts_with(prefix));
        if !known(&sub_prefix) {
            return arm_error(
                StatusCode::NOT_FOUND,
                "SubscriptionNotFound",
                &format!("The subscription '{sub}' could not be found."),
            );
        }
        if !known(&rg_prefix) {
            return arm_error(
                StatusCode::NOT_FOUND,
                "ResourceGroupNotFound",
                &format!("Resource group '{rg}' could not be found."),
            );
        }
        if let Some((parent, slot)) = key.split_once("/slots/") {
            if sites.contains_key(parent) {
                return legacy_error(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    "Cannot find {0} with name {1}.",
                    &["Site", slot],
                );
            }
        }
        let tail = id.split("/providers/").nth(1).unwrap_or(&id);
        let resource = tail.split('/').take(3).collect::<Vec<_>>().join("/");
        return arm_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            &format!("The Resource '{resource}' under resource group '{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"),
        );
    };
    let static_site = site.kind == "staticsite";
    if site.forbidden {
        let action = match (&op, static_site) {
            (Op::List, true) => "Microsoft.Web/staticSites/listAppSettings/action",
            (_, true) => "Microsoft.Web/staticSites/config/write",
            (Op::List, false) => "Microsoft.Web/sites/config/list/action",
            (_, false) => "Microsoft.Web/sites/config/write",
        };
        return arm_error(
            StatusCode::FORBIDDEN,
            "AuthorizationFailed",
            &format!("The client '{0}' with object id '{0}' does not have authorization to perform action '{action}' over scope '{id}' or the scope is invalid. If access was recently granted, please refresh your credentials.", caller),
        );
    }
    let dictionary = |site: &Site| {
        let config_type = if static_site {
            "Microsoft.Web/staticSites/config"
        } else if site.id.to_ascii_lowercase().contains("/slots/") {
            "Microsoft.Web/sites/slots/config"
        } else {
            "Microsoft.Web/sites/config"
        };
        let name = if static_site {
            "appSettings"
        } else {
            "appsettings"
        };
        json!({"id": format!("{}/config/{name}", site.id), "name": "appsettings", "type": config_type,
               "kind": site.kind, "properties": site.settings})
    };
    let mut response = match op {
        Op::List => json_response(StatusCode::OK, dictionary(site)),
        Op::Replace => {
            let parsed: Option<Map<String, Value>> = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("properties").and_then(Value::as_object).cloned());
            let Some(properties) = parsed.filter(|p| p.values().all(Value::is_string)) else {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "The request body must be {\"properties\": {\"name\": \"value\", ...}} with string values.",
                );
            };
            // The PUT replaces the whole set: settings left out are deleted, as in Azure.
            site.settings = properties;
            site.restarts += 1;
            *arm.writes.lock().unwrap() += 1;
            json_response(StatusCode::OK, dictionary(site))
        }
        Op::Refresh => {
            site.reference_refreshes += 1;
            json_response(StatusCode::OK, json!({}))
        }
    };
    let writes = *arm.writes.lock().unwrap();
    let headers = response.headers_mut();
    headers.insert(
        "x-ms-ratelimit-remaining-subscription-reads",
        HeaderValue::from(249u64),
    );
    headers.insert(
        "x-ms-ratelimit-remaining-subscription-writes",
        HeaderValue::from(199u64.saturating_sub(writes)),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::super::test_support::Harness;
    use super::api_version_ok;
    use serde_json::{json, Value};

    /// ARM requires a management token and an api-version.
    #[tokio::test]
    async fn requires_token_and_api_version() {
        let h = Harness::start().await;
        let base = format!(
            "{}/subscriptions/x/resourceGroups/rg/providers/Microsoft.Web/sites/s/config/appsettings/list",
            h.env("AZURE_RESOURCE_MANAGER_ENDPOINT")
        );
        let url = format!("{base}?api-version=2025-05-01");
        let rsp = h
            .client
            .post(&url)
            .header("content-length", "0")
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 401);
        assert!(rsp.headers().contains_key("www-authenticate"));
        let vault_token = h.token("https://vault.azure.net").await;
        let rsp = h
            .client
            .post(&url)
            .bearer_auth(&vault_token)
            .header("content-length", "0")
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 401);
        let token = h.token("https://management.azure.com/").await;
        let rsp = h
            .client
            .post(&base)
            .bearer_auth(&token)
            .header("content-length", "0")
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 400);
        let body: Value = rsp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "MissingApiVersionParameter");
        let rsp = h
            .client
            .post(&url)
            .bearer_auth(&token)
            .header("content-length", "0")
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 404);
        let body: Value = rsp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "SubscriptionNotFound");
        h.sandbox.shutdown().await;
    }

    /// List, whole-set PUT (one restart each), slots, static sites, errors of the reference.
    #[tokio::test]
    async fn app_settings_round_trip() {
        let h = Harness::start().await;
        let arm = h.env("AZURE_RESOURCE_MANAGER_ENDPOINT");
        // The audience a custom cloud's client asks for: the endpoint itself.
        let token = h.token(&arm).await;
        let site = format!(
            "{arm}/subscriptions/{}/resourceGroups/rg-orders/providers/Microsoft.Web/sites/func-orders",
            super::super::demo::SUBSCRIPTION
        );
        let call = |method: reqwest::Method, url: String, body: Option<Value>| {
            let mut r = h.client.request(method, url).bearer_auth(&token);
            r = match body {
                Some(b) => r.json(&b),
                None => r.header("content-length", "0"),
            };
            async move {
                let rsp = r.send().await.unwrap();
                (
                    rsp.status().as_u16(),
                    rsp.json::<Value>().await.unwrap_or_default(),
                )
            }
        };
        let v = "?api-version=2026-03-15";
        let (status, listed) = call(
            reqwest::Method::POST,
            format!("{site}/slots/staging/config/appsettings/list{v}"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{listed}");
        assert_eq!(listed["type"], "Microsoft.Web/sites/slots/config");
        assert!(listed["properties"]["ORDERS_API_KEY"].is_string());
        let (status, put) = call(
            reqwest::Method::PUT,
            format!("{site}/slots/staging/config/appsettings{v}"),
            Some(json!({"properties": {"ONLY": "this"}})),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(put["properties"], json!({"ONLY": "this"}));
        let (_, listed) = call(
            reqwest::Method::POST,
            format!("{site}/slots/staging/config/appsettings/list{v}"),
            None,
        )
        .await;
        assert_eq!(
            listed["properties"],
            json!({"ONLY": "this"}),
            "the PUT replaces the whole set"
        );
        let (status, bad) = call(
            reqwest::Method::PUT,
            format!("{site}/config/appsettings{v}"),
            Some(json!({"properties": {"N": 1}})),
        )
        .await;
        assert_eq!(
            (status, bad["error"]["code"].as_str()),
            (400, Some("BadRequest"))
        );
        let (status, missing_slot) = call(
            reqwest::Method::POST,
            format!("{site}/slots/nope/config/appsettings/list{v}"),
            None,
        )
        .await;
        assert_eq!(
            (status, missing_slot["Code"].as_str()),
            (404, Some("NotFound"))
        );
        let (status, missing) = call(
            reqwest::Method::POST,
            format!("{site}-x/config/appsettings/list{v}"),
            None,
        )
        .await;
        assert_eq!(
            (status, missing["error"]["code"].as_str()),
            (404, Some("ResourceNotFound"))
        );
        let (status, _) = call(
            reqwest::Method::POST,
            format!("{site}/config/configreferences/appsettings/refresh{v}"),
            None,
        )
        .await;
        assert_eq!(status, 200);
        let swa = format!(
            "{arm}/subscriptions/{}/resourceGroups/rg-web/providers/Microsoft.Web/staticSites/swa-portal",
            super::super::demo::SUBSCRIPTION
        );
        let (status, listed) = call(
            reqwest::Method::POST,
            format!("{swa}/listAppSettings{v}"),
            None,
        )
        .await;
        assert_eq!(status, 200);
        assert!(listed["properties"]["PORTAL_API_KEY"].is_string());
        let locked = format!(
            "{arm}/subscriptions/{}/resourceGroups/rg-orders/providers/Microsoft.Web/sites/func-locked/config/appsettings/list{v}",
            super::super::demo::SUBSCRIPTION
        );
        let (status, forbidden) = call(reqwest::Method::POST, locked, None).await;
        assert_eq!(
            (status, forbidden["error"]["code"].as_str()),
            (403, Some("AuthorizationFailed"))
        );
        // ARM names the caller: the principal the token was issued to (the managed identity).
        let caller = &h.sandbox.cast.identity.principal_id;
        let message = forbidden["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("The client '{caller}' with object id '{caller}'")),
            "{message}"
        );

        let state: Value = h
            .client
            .get(format!("{}/state", h.sandbox.info().endpoints.admin))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let sites = &state["resourceManager"]["sites"];
        assert_eq!(sites["func-orders/slots/staging"]["restarts"], 1);
        assert_eq!(sites["func-orders"]["restarts"], 0);
        assert_eq!(sites["func-orders"]["referenceRefreshes"], 1);
        h.sandbox.shutdown().await;
    }

    #[test]
    fn api_versions() {
        for v in [
            "2026-03-15",
            "2025-05-01",
            "2026-03-01-preview",
            "2016-08-01",
        ] {
            assert!(api_version_ok(v), "{v}");
        }
        for v in ["", "latest", "2025-5-1", "7.6"] {
            assert!(!api_version_ok(v), "{v}");
        }
    }
}
