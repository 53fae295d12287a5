//! The Apigee X runtime: the API gateway in front of the demo's APIs, where consumers call
//! with their key. Each API proxy has a base path, belongs to one API product and verifies
//! the key as Apigee's VerifyAPIKey policy does, from a header or a query parameter. It
//! accepts a key exactly when the Apigee double holds it: the key approved, its app approved,
//! not expired, and an approved association with the proxy's product. Otherwise it answers
//! 401 with Apigee's fault body (`{"fault": {"faultstring", "detail": {"errorcode"}}}`; the
//! codes of `tests/fixtures/apigee-verify-api-key-errors.json`).
//!
//! It reads the Apigee double's state (its `admin/state` snapshot) and never changes it; it
//! has no state of its own.

use super::apigee::Apigee;
use super::double::{fault_message, reason, with_retry_after, Double, Platform};
use super::front_end::FrontEnd;
use super::{json_response, now_ms, query_map};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Router;
use serde_json::{json, Value};
use std::sync::Arc;

/// Where a proxy's VerifyAPIKey policy reads the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyRef {
    /// `request.header.<name>`.
    Header(&'static str),
    /// `request.queryparam.<name>`.
    Query(&'static str),
}

impl KeyRef {
    fn variable(self) -> String {
        match self {
            KeyRef::Header(h) => format!("request.header.{h}"),
            KeyRef::Query(q) => format!("request.queryparam.{q}"),
        }
    }
}

/// One API proxy: its base path, its API product, and where it reads the key.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Proxy {
    pub base_path: &'static str,
    pub product: &'static str,
    pub key: KeyRef,
}

/// The demo's proxies, one per API product the Apigee double seeds.
pub(crate) const PROXIES: [Proxy; 3] = [
    Proxy {
        base_path: "/healthcheck/v1",
        product: "healthcheck-product",
        key: KeyRef::Header("x-apikey"),
    },
    Proxy {
        base_path: "/orders/v1",
        product: "orders-product",
        key: KeyRef::Query("apikey"),
    },
    Proxy {
        base_path: "/reference/v1",
        product: "reference-product",
        key: KeyRef::Header("x-apikey"),
    },
];

/// The gateway of the Apigee organization the [`Apigee`] double holds.
pub(crate) struct ApiGateway {
    /// `https://127.0.0.1:<port>`.
    pub base_url: String,
    apigee: Arc<Apigee>,
}

impl ApiGateway {
    /// The gateway at `base_url`, verifying keys against `apigee` (read only).
    pub fn new(base_url: &str, apigee: Arc<Apigee>) -> Self {
        Self {
            base_url: base_url.to_string(),
            apigee,
        }
    }
}

/// Apigee's runtime fault body.
fn fault(status: StatusCode, faultstring: &str, errorcode: &str) -> Response {
    json_response(
        status,
        json!({"fault": {"faultstring": faultstring, "detail": {"errorcode": errorcode}}}),
    )
}

/// Why VerifyAPIKey refuses a key.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No credential has this key.
    Invalid,
    /// The credential is revoked.
    KeyNotApproved,
    /// Its developer app is revoked.
    AppNotApproved,
    /// The credential has expired.
    Expired,
    /// The key is not approved for the proxy's product (no association, or one that is
    /// `pending` or `revoked`).
    NotForResource,
}

impl Refusal {
    fn response(&self) -> Response {
        let (faultstring, code) = match self {
            Refusal::Invalid => ("Invalid ApiKey", "oauth.v2.InvalidApiKey"),
            Refusal::KeyNotApproved => ("ApiKey not approved", "oauth.v2.ApiKeyNotApproved"),
            Refusal::AppNotApproved => (
                "Developer app not approved",
                "keymanagement.service.invalid_client-app_not_approved",
            ),
            Refusal::Expired => ("Key Expired", "keymanagement.service.consumer_key_expired"),
            Refusal::NotForResource => (
                "Invalid ApiKey for given resource",
                "oauth.v2.InvalidApiKeyForGivenResource",
            ),
        };
        fault(StatusCode::UNAUTHORIZED, faultstring, code)
    }
}

/// What VerifyAPIKey decides for `key` on a proxy of `product` at `now` (ms), over the Apigee
/// double's snapshot: the app the key belongs to, or why it is refused.
pub(crate) fn verify(
    snapshot: &Value,
    key: &str,
    product: &str,
    now: i64,
) -> Result<String, Refusal> {
    let apps = snapshot["apps"].as_object().ok_or(Refusal::Invalid)?;
    let (app_name, app, credential) = apps
        .iter()
        .find_map(|(name, app)| {
            app["credentials"]
                .as_array()?
                .iter()
                .find(|c| c["consumerKey"] == key)
                .map(|c| (name, app, c))
        })
        .ok_or(Refusal::Invalid)?;
    if credential["status"] != "approved" {
        return Err(Refusal::KeyNotApproved);
    }
    if app["status"] != "approved" {
        return Err(Refusal::AppNotApproved);
    }
    let expires_at: i64 = credential["expiresAt"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(-1);
    if expires_at != -1 && expires_at <= now {
        return Err(Refusal::Expired);
    }
    let approved = credential["apiProducts"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|a| a["apiproduct"] == product && a["status"] == "approved");
    if !approved {
        return Err(Refusal::NotForResource);
    }
    Ok(app_name.clone())
}

impl Double for ApiGateway {
    fn service(&self) -> &'static str {
        "apiGateway"
    }

    /// Apigee X's runtime sits behind Google's load balancer.
    fn front_end(&self) -> FrontEnd {
        FrontEnd::Google
    }

    fn router(self: Arc<Self>, _platform: Arc<Platform>) -> Router {
        Router::new().fallback(call).with_state(self)
    }

    /// Apigee's runtime fault body; an injected 401 is the answer a key the runtime does not
    /// know yet gets (a new key before it has propagated).
    fn fault(&self, status: StatusCode, retry_after: Option<u64>) -> Response {
        let response = if status == StatusCode::UNAUTHORIZED {
            Refusal::Invalid.response()
        } else {
            let code = format!("messaging.runtime.{}", reason(status).replace(' ', ""));
            fault(status, &fault_message(status), &code)
        };
        with_retry_after(response, retry_after)
    }
}

async fn call(State(gateway): State<Arc<ApiGateway>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let Some(proxy) = PROXIES.iter().find(|p| {
        path == p.base_path
            || path
                .strip_prefix(p.base_path)
                .is_some_and(|rest| rest.starts_with('/'))
    }) else {
        return fault(
            StatusCode::NOT_FOUND,
            &format!("Unable to identify proxy for host: default and url: {path}"),
            "messaging.adaptors.http.flow.ApplicationNotFound",
        );
    };
    let key = match proxy.key {
        KeyRef::Header(name) => request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        KeyRef::Query(name) => query_map(request.uri()).remove(name),
    };
    let Some(key) = key.filter(|k| !k.is_empty()) else {
        return fault(
            StatusCode::UNAUTHORIZED,
            &format!(
                "Failed to resolve API Key variable {}",
                proxy.key.variable()
            ),
            "steps.oauth.v2.FailedToResolveAPIKey",
        );
    };
    match verify(&gateway.apigee.snapshot(), &key, proxy.product, now_ms()) {
        Ok(app) => json_response(
            StatusCode::OK,
            json!({"status": "ok", "proxy": proxy.base_path, "apiProduct": proxy.product, "app": app}),
        ),
        Err(refusal) => refusal.response(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::Harness;
    use super::*;

    /// A snapshot in the Apigee double's shape: one app, one key, with these statuses.
    fn snapshot(app: &str, key: &str, expires_at: i64, product: &str) -> Value {
        json!({"apps": {"App1": {"status": app, "credentials": [
            {"consumerKey": "k1", "status": key, "expiresAt": expires_at.to_string(),
             "apiProducts": [{"apiproduct": "p1", "status": product}]}]}}})
    }

    /// Every refusal of VerifyAPIKey, each on one thing changed from a key it accepts.
    #[test]
    fn verify_refuses_what_apigee_refuses() {
        let now = 1_000_000;
        let ok = snapshot("approved", "approved", now + 1, "approved");
        assert_eq!(verify(&ok, "k1", "p1", now), Ok("App1".to_string()));
        assert_eq!(
            verify(
                &snapshot("approved", "approved", -1, "approved"),
                "k1",
                "p1",
                now
            ),
            Ok("App1".to_string()),
            "-1 never expires"
        );
        assert_eq!(verify(&ok, "k2", "p1", now), Err(Refusal::Invalid));
        assert_eq!(verify(&ok, "k1", "p2", now), Err(Refusal::NotForResource));
        for (s, want) in [
            (
                snapshot("approved", "revoked", now + 1, "approved"),
                Refusal::KeyNotApproved,
            ),
            (
                snapshot("revoked", "approved", now + 1, "approved"),
                Refusal::AppNotApproved,
            ),
            (
                snapshot("approved", "approved", now, "approved"),
                Refusal::Expired,
            ),
            (
                snapshot("approved", "approved", now + 1, "pending"),
                Refusal::NotForResource,
            ),
            (
                snapshot("approved", "approved", now + 1, "revoked"),
                Refusal::NotForResource,
            ),
        ] {
            assert_eq!(verify(&s, "k1", "p1", now), Err(want), "{s}");
        }
    }

    /// The refusals' bodies are Apigee's, as the fixture copies them.
    #[tokio::test]
    async fn refusals_answer_apigee_bodies() {
        let fixture: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/apigee-verify-api-key-errors.json"
        ))
        .unwrap();
        let faults = fixture["faults"].as_array().unwrap();
        for refusal in [
            Refusal::Invalid,
            Refusal::NotForResource,
            Refusal::Expired,
            Refusal::KeyNotApproved,
        ] {
            let response = refusal.response();
            let status = response.status().as_u16();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            assert!(
                faults
                    .iter()
                    .any(|f| f["status"] == status && f["body"] == body),
                "{refusal:?}: {status} {body} is not in the fixture"
            );
        }
    }

    /// The gateway's answers over TLS, against the demo's Apigee state: the current key works
    /// on its own product's proxy only, in the place that proxy reads it from; the expired
    /// key, an unknown key, no key and an unknown path are refused with Apigee's bodies; an
    /// injected 401 answers as an unknown key.
    #[tokio::test]
    async fn answers_over_tls_against_the_apigee_state() {
        let h = Harness::start().await;
        let base = h.sandbox.cast.api_gateway.base_url.clone();
        let state = h.sandbox.cast.apigee.snapshot();
        let creds = state["apps"]["APIKeyRotator_TestApp1_Sandbox"]["credentials"]
            .as_array()
            .unwrap()
            .clone();
        let (expired, current) = (
            creds[0]["consumerKey"].as_str().unwrap().to_string(),
            creds[1]["consumerKey"].as_str().unwrap().to_string(),
        );
        let get = |path: &str, key: Option<&str>| {
            let mut r = h.client.get(format!("{base}{path}"));
            if let Some(k) = key {
                r = r.header("x-apikey", k);
            }
            r.send()
        };
        let body = |r: reqwest::Response| async move {
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            (
                status,
                v["fault"]["detail"]["errorcode"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        };
        assert_eq!(
            body(get("/healthcheck/v1/ping", Some(&current)).await.unwrap())
                .await
                .0,
            200
        );
        for (path, key, want) in [
            (
                "/healthcheck/v1/ping",
                Some(expired.as_str()),
                (401, "keymanagement.service.consumer_key_expired"),
            ),
            (
                "/healthcheck/v1/ping",
                Some("nope"),
                (401, "oauth.v2.InvalidApiKey"),
            ),
            (
                "/healthcheck/v1/ping",
                None,
                (401, "steps.oauth.v2.FailedToResolveAPIKey"),
            ),
            (
                "/reference/v1/ping",
                Some(current.as_str()),
                (401, "oauth.v2.InvalidApiKeyForGivenResource"),
            ),
            (
                "/nothing/here",
                Some(current.as_str()),
                (404, "messaging.adaptors.http.flow.ApplicationNotFound"),
            ),
        ] {
            let (status, code) = body(get(path, key).await.unwrap()).await;
            assert_eq!((status, code.as_str()), want, "{path}");
        }
        // The orders proxy reads the key from the query: a header does not count there.
        let orders_key = state["apps"]["APIKeyRotator_TestApp2_Sandbox"]["credentials"][1]
            ["consumerKey"]
            .as_str()
            .unwrap()
            .to_string();
        let r = h
            .client
            .get(format!("{base}/orders/v1/status"))
            .query(&[("apikey", &orders_key)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = h
            .client
            .get(format!("{base}/orders/v1/status"))
            .header("x-apikey", &orders_key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        // HEAD is answered like GET.
        let r = h
            .client
            .head(format!("{base}/healthcheck/v1/ping"))
            .header("x-apikey", &current)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);

        // Propagation delay: the next check is refused as an unknown key, then accepted.
        let admin = h.sandbox.info().endpoints.admin.clone();
        let r = h
            .client
            .post(format!("{admin}/faults"))
            .json(&json!({"service": "apiGateway", "status": 401, "times": 1}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        let (status, code) = body(get("/healthcheck/v1/ping", Some(&current)).await.unwrap()).await;
        assert_eq!((status, code.as_str()), (401, "oauth.v2.InvalidApiKey"));
        assert_eq!(
            body(get("/healthcheck/v1/ping", Some(&current)).await.unwrap())
                .await
                .0,
            200
        );
        let logged: Vec<_> = h
            .requests()
            .await
            .into_iter()
            .filter(|r| r["service"] == "apiGateway")
            .collect();
        assert!(logged.len() >= 10, "{logged:?}");
        h.sandbox.shutdown().await;
    }
}
