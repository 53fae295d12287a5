//! The admin endpoint (plain http): the request log, fault injection, the state of every
//! double and the connections each accepted, so tests can count calls, break things on
//! purpose and check what was written.

use super::double::{Double, Platform};
use super::json_response;
use super::log::Fault;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// What the admin endpoint reads: the platform's log and every deployed double.
#[derive(Clone)]
struct Admin {
    platform: Arc<Platform>,
    doubles: Arc<[Arc<dyn Double>]>,
}

/// The admin routes over `doubles`.
pub(crate) fn router(platform: Arc<Platform>, doubles: Vec<Arc<dyn Double>>) -> Router {
    let admin = Admin {
        platform,
        doubles: doubles.into(),
    };
    Router::new()
        .route("/requests", get(requests).delete(clear_requests))
        .route(
            "/faults",
            axum::routing::post(add_fault).delete(clear_faults),
        )
        .route("/state", get(state))
        .route("/connections", get(connections))
        .route("/limits", get(limits).post(set_limit))
        .with_state(admin)
}

async fn requests(State(admin): State<Admin>) -> Response {
    json_response(StatusCode::OK, json!(admin.platform.log.entries()))
}

/// Connections accepted so far, by service (a client that reuses its connections opens few).
async fn connections(State(admin): State<Admin>) -> Response {
    json_response(StatusCode::OK, json!(admin.platform.log.connections()))
}

/// The published limits' buckets used so far: scope, class, size, refill rate (scaled by the
/// time factor), requests admitted and refused (empty when throttling is off).
async fn limits(State(admin): State<Admin>) -> Response {
    json_response(StatusCode::OK, json!(admin.platform.limits.report()))
}

/// Which buckets `POST admin/limits` sets: those a `method path` request to `service` draws
/// from (in every instance of the service), to `tokens`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SetLimit {
    service: String,
    method: String,
    path: String,
    tokens: f64,
}

/// Leaves buckets with `tokens` as if another client had spent the rest (throttling on only).
async fn set_limit(State(admin): State<Admin>, body: Bytes) -> Response {
    let bad = |message: String| {
        json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": {"code": "BadRequest", "message": message}}),
        )
    };
    let spec: SetLimit = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => return bad(format!("invalid limit: {e}")),
    };
    if !admin.platform.limits.enabled() {
        return bad("throttling is off in this sandbox".into());
    }
    let Ok(method) = axum::http::Method::from_bytes(spec.method.as_bytes()) else {
        return bad(format!("method: not an HTTP method: {}", spec.method));
    };
    let mut set = 0;
    for double in admin.doubles.iter().filter(|d| d.service() == spec.service) {
        if let Some(limit) = double.limit(&method, &spec.path) {
            admin
                .platform
                .limits
                .set_tokens(double.service(), &limit, spec.tokens);
            set += 1;
        }
    }
    if set == 0 {
        return bad(format!(
            "no limit of service \"{}\" applies to {} {}",
            spec.service, spec.method, spec.path
        ));
    }
    json_response(StatusCode::OK, json!(admin.platform.limits.report()))
}

async fn clear_requests(State(admin): State<Admin>) -> Response {
    admin.platform.log.clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn add_fault(State(admin): State<Admin>, body: Bytes) -> Response {
    let bad = |message: String| {
        json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": {"code": "BadRequest", "message": message}}),
        )
    };
    let fault: Fault = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => return bad(format!("invalid fault: {e}")),
    };
    let mut services: Vec<&str> = Vec::new();
    for double in admin.doubles.iter() {
        if !services.contains(&double.service()) {
            services.push(double.service());
        }
    }
    if let Err(message) = fault.validate(&services) {
        return bad(message);
    }
    admin.platform.log.add_fault(fault.clone());
    json_response(StatusCode::CREATED, json!(fault))
}

async fn clear_faults(State(admin): State<Admin>) -> Response {
    admin.platform.log.clear_faults();
    StatusCode::NO_CONTENT.into_response()
}

/// Every double's state: one section per service, by instance for the services with one
/// listener per instance.
async fn state(State(admin): State<Admin>) -> Response {
    let mut sections = Map::new();
    for shown in admin.doubles.iter().filter_map(|d| d.state()) {
        match shown.instance {
            Some(instance) => {
                let section = sections
                    .entry(shown.section)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(instances) = section {
                    instances.insert(instance, shown.value);
                }
            }
            None => {
                sections.insert(shown.section.to_string(), shown.value);
            }
        }
    }
    json_response(StatusCode::OK, Value::Object(sections))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::Harness;
    use serde_json::{json, Value};

    /// The log records every request, in order, with its service and status.
    #[tokio::test]
    async fn request_log_records_services_in_order() {
        let h = Harness::start().await;
        let admin = h.sandbox.info().endpoints.admin.clone();
        let token = h.token("https://vault.azure.net").await;
        let vault = h.sandbox.info().endpoints.key_vaults["kv-partners-prd"].clone();
        h.client
            .get(format!("{vault}secrets/partner-apikey?api-version=7.6"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        h.client
            .get(format!(
                "{}/common/discovery/instance",
                h.env("AZURE_AUTHORITY_HOST")
            ))
            .send()
            .await
            .unwrap();
        let log = h.requests().await;
        let seen: Vec<(String, u64)> = log
            .iter()
            .map(|r| {
                (
                    r["service"].as_str().unwrap().to_string(),
                    r["status"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("identity".into(), 200),
                ("keyVault".into(), 404),
                ("authority".into(), 200)
            ]
        );
        assert_eq!(log[1]["method"], "GET");
        assert_eq!(log[1]["path"], "/secrets/partner-apikey");
        assert_eq!(log[1]["query"], "api-version=7.6");
        assert_eq!(
            h.client
                .delete(format!("{admin}/requests"))
                .send()
                .await
                .unwrap()
                .status(),
            204
        );
        assert!(h.requests().await.is_empty());
        h.sandbox.shutdown().await;
    }

    /// A 503 fault with Retry-After and times 1 is served once, then the service answers normally.
    #[tokio::test]
    async fn status_fault_is_served_once() {
        let h = Harness::start().await;
        let admin = h.sandbox.info().endpoints.admin.clone();
        let fault = json!({"service": "keyVault", "match": "/secrets/reference-prd-apikey", "status": 503, "retryAfterSeconds": 2, "times": 1});
        assert_eq!(
            h.client
                .post(format!("{admin}/faults"))
                .json(&fault)
                .send()
                .await
                .unwrap()
                .status(),
            201
        );
        let bad = json!({"service": "nope", "status": 503});
        assert_eq!(
            h.client
                .post(format!("{admin}/faults"))
                .json(&bad)
                .send()
                .await
                .unwrap()
                .status(),
            400
        );

        let token = h.token("https://vault.azure.net").await;
        let url = format!(
            "{}secrets/reference-prd-apikey?api-version=7.6",
            h.sandbox.info().endpoints.key_vaults["kv-consumers-prd"]
        );
        let rsp = h.client.get(&url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(rsp.status(), 503);
        assert_eq!(rsp.headers()["retry-after"], "2");
        assert_eq!(
            rsp.json::<Value>().await.unwrap()["error"]["code"],
            "ServiceUnavailable"
        );
        let rsp = h.client.get(&url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(rsp.status(), 200);
        let statuses: Vec<u64> = h
            .requests()
            .await
            .iter()
            .filter(|r| r["service"] == "keyVault")
            .map(|r| r["status"].as_u64().unwrap())
            .collect();
        assert_eq!(statuses, [503, 200]);

        // A delay-only fault slows every matching request but lets it through.
        let delay = json!({"service": "keyVault", "delayMs": 150});
        h.client
            .post(format!("{admin}/faults"))
            .json(&delay)
            .send()
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let rsp = h.client.get(&url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(rsp.status(), 200);
        assert!(started.elapsed() >= std::time::Duration::from_millis(150));
        h.sandbox.shutdown().await;
    }

    /// Reset, timeout and malformed faults break the answer; clearing faults restores it.
    #[tokio::test]
    async fn reset_timeout_and_malformed_faults() {
        let h = Harness::start().await;
        let admin = h.sandbox.info().endpoints.admin.clone();
        let url = format!(
            "{}/common/discovery/instance",
            h.env("AZURE_AUTHORITY_HOST")
        );
        let reset = json!({"service": "authority", "kind": "reset", "times": 1});
        h.client
            .post(format!("{admin}/faults"))
            .json(&reset)
            .send()
            .await
            .unwrap();
        let outcome = match h.client.get(&url).send().await {
            Ok(rsp) => rsp.bytes().await.map(|_| ()),
            Err(e) => Err(e),
        };
        assert!(outcome.is_err(), "a reset must not yield a complete answer");

        let timeout = json!({"service": "authority", "kind": "timeout", "times": 1});
        h.client
            .post(format!("{admin}/faults"))
            .json(&timeout)
            .send()
            .await
            .unwrap();
        let err = h
            .client
            .get(&url)
            .timeout(std::time::Duration::from_millis(300))
            .send()
            .await
            .unwrap_err();
        assert!(err.is_timeout());

        let malformed = json!({"service": "authority", "kind": "malformed"});
        h.client
            .post(format!("{admin}/faults"))
            .json(&malformed)
            .send()
            .await
            .unwrap();
        let rsp = h.client.get(&url).send().await.unwrap();
        assert_eq!(rsp.status(), 200);
        assert!(rsp.json::<Value>().await.is_err());
        assert_eq!(
            h.client
                .delete(format!("{admin}/faults"))
                .send()
                .await
                .unwrap()
                .status(),
            204
        );
        assert!(h
            .client
            .get(&url)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .is_ok());
        h.sandbox.shutdown().await;
    }
}
