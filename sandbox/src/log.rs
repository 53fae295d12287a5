//! The request log and fault injection: a middleware around every service router, so every
//! request is recorded (service, method, path, query, status; never bodies) and can be broken on
//! purpose from the admin endpoint.

use super::{json_response, Shared};
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{from_fn, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Service names as they appear in the log and in fault specs.
pub(crate) const SERVICES: [&str; 7] = [
    "identity",
    "authority",
    "keyVault",
    "appConfiguration",
    "resourceManager",
    "apigee",
    "applicationApi",
];

/// One logged request.
#[derive(Serialize, Clone, Debug)]
pub(crate) struct LoggedRequest {
    pub service: String,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// `None` while in flight, and for faults that never answer (reset, timeout).
    pub status: Option<u16>,
}

/// What an injected fault does.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum FaultKind {
    /// Answer with `status` (and `Retry-After` when `retryAfterSeconds` is set).
    Status,
    /// Drop the connection without a complete answer.
    Reset,
    /// Never answer.
    Timeout,
    /// Answer 200 with a truncated JSON body.
    Malformed,
    /// Let the service handle the request (a write is applied), then drop the connection
    /// before the answer: the client cannot tell whether it was applied.
    Lost,
}

/// A fault, as posted to `admin/faults`.
#[derive(Deserialize, Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Fault {
    pub service: String,
    /// Substring of the request path, or of the path followed by `?` and the query (so
    /// `appName=x` picks one caller of a shared path); absent matches every path.
    #[serde(rename = "match", default)]
    pub path_match: Option<String>,
    /// Only requests with this method (`GET`, `PUT`, ...); absent matches every method.
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub retry_after_seconds: Option<u64>,
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// How many requests it affects; absent means until cleared.
    #[serde(default)]
    pub times: Option<u32>,
    /// Defaults to `status` when a status is given; otherwise the fault only delays.
    #[serde(default)]
    pub kind: Option<FaultKind>,
}

impl Fault {
    /// Checks the spec, returning what is wrong with it.
    pub fn validate(&self) -> Result<(), String> {
        if !SERVICES.contains(&self.service.as_str()) {
            return Err(format!(
                "service: unknown \"{}\"; expected one of {}",
                self.service,
                SERVICES.join(", ")
            ));
        }
        if self.kind == Some(FaultKind::Status) && self.status.is_none() {
            return Err("status: required when kind is \"status\"".into());
        }
        if let Some(s) = self.status {
            if StatusCode::from_u16(s).is_err() {
                return Err(format!("status: {s} is not an HTTP status"));
            }
        }
        if self.times == Some(0) {
            return Err("times: must be at least 1 (absent means until cleared)".into());
        }
        Ok(())
    }

    fn effective_kind(&self) -> Option<FaultKind> {
        self.kind.or(self.status.map(|_| FaultKind::Status))
    }
}

/// The request log, the active faults, the latency added to every answer and the connections
/// accepted per service.
#[derive(Default)]
pub(crate) struct RequestLog {
    entries: Mutex<Vec<(u64, LoggedRequest)>>,
    next_id: Mutex<u64>,
    faults: Mutex<Vec<Fault>>,
    latency: Duration,
    connections: Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

impl RequestLog {
    /// An empty log whose services answer `latency` later than they would.
    pub fn new(latency: Duration) -> Self {
        Self {
            latency,
            ..Self::default()
        }
    }

    /// Counts a connection accepted by `service`.
    pub fn connection_accepted(&self, service: &'static str) {
        *self.connections.lock().unwrap().entry(service).or_default() += 1;
    }

    /// Connections accepted so far, by service.
    pub fn connections(&self) -> std::collections::BTreeMap<&'static str, u64> {
        self.connections.lock().unwrap().clone()
    }

    /// Every logged request, in arrival order.
    pub fn entries(&self) -> Vec<LoggedRequest> {
        let entries = self.entries.lock().unwrap();
        entries.iter().map(|(_, e)| e.clone()).collect()
    }

    /// Forgets every logged request.
    pub fn clear(&self) {
        self.entries.lock().unwrap().clear();
    }

    /// Adds a fault.
    pub fn add_fault(&self, fault: Fault) {
        self.faults.lock().unwrap().push(fault);
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.faults.lock().unwrap().clear();
    }

    fn start(&self, entry: LoggedRequest) -> u64 {
        let id = {
            let mut next = self.next_id.lock().unwrap();
            *next += 1;
            *next
        };
        self.entries.lock().unwrap().push((id, entry));
        id
    }

    fn finish(&self, id: u64, status: Option<u16>) {
        let mut entries = self.entries.lock().unwrap();
        if let Some((_, e)) = entries.iter_mut().rev().find(|(i, _)| *i == id) {
            e.status = status;
        }
    }

    /// The first fault matching the request (`target` is the path, with `?query` when there
    /// is one), consuming one of its `times`.
    fn take_fault(&self, service: &str, method: &str, target: &str) -> Option<Fault> {
        let mut faults = self.faults.lock().unwrap();
        let index = faults.iter().position(|f| {
            f.service == service
                && f.method
                    .as_deref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(method))
                && f.path_match.as_deref().is_none_or(|m| target.contains(m))
        })?;
        let fault = faults[index].clone();
        match &mut faults[index].times {
            Some(1) => {
                faults.remove(index);
            }
            Some(n) => *n -= 1,
            None => {}
        }
        Some(fault)
    }
}

/// Wraps `router` so every request to it is logged under `service` and may meet a fault.
pub(crate) fn observe(router: Router, service: &'static str, shared: &Arc<Shared>) -> Router {
    let shared = shared.clone();
    router.layer(from_fn(move |request: Request, next: Next| {
        let shared = shared.clone();
        async move { handle(&shared, service, request, next).await }
    }))
}

async fn handle(shared: &Shared, service: &'static str, request: Request, next: Next) -> Response {
    let log = &shared.log;
    let path = request.uri().path().to_string();
    let id = log.start(LoggedRequest {
        service: service.to_string(),
        method: request.method().to_string(),
        path: path.clone(),
        query: request.uri().query().map(str::to_string),
        status: None,
    });
    if !log.latency.is_zero() {
        tokio::time::sleep(log.latency).await;
    }
    // The front end refuses before the service (and its faults) ever sees the request.
    if let Some(refused) = super::front_end::refusal(
        service,
        request.method(),
        request.version(),
        request.headers(),
    ) {
        log.finish(id, Some(refused.status().as_u16()));
        return refused;
    }
    let target = match request.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path.clone(),
    };
    let response = match log.take_fault(service, request.method().as_str(), &target) {
        Some(fault) => {
            // Paths can carry consumer keys (Apigee), so only the service is traced.
            tracing::debug!(service, kind = ?fault.effective_kind(), "sandbox fault injected");
            if let Some(ms) = fault.delay_ms {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            match fault.effective_kind() {
                None => next.run(request).await,
                Some(FaultKind::Lost) => {
                    let _applied = next.run(request).await;
                    reset()
                }
                Some(kind) => injected(service, kind, &fault).await,
            }
        }
        None => next.run(request).await,
    };
    let status = response.status().as_u16();
    let never_answers = response.extensions().get::<NoAnswer>().is_some();
    log.finish(id, (!never_answers).then_some(status));
    response
}

/// Marks a response that will never reach the client (reset).
#[derive(Clone, Copy)]
struct NoAnswer;

/// The error body `service` answers `status` with, in that service's own shape.
fn fault_body(service: &str, status: StatusCode) -> serde_json::Value {
    use serde_json::json;
    let reason = status.canonical_reason().unwrap_or("Error");
    let message = format!("{reason} (fault injected by the sandbox).");
    let throttled = status == StatusCode::TOO_MANY_REQUESTS;
    match service {
        "identity" => json!({"statusCode": status.as_u16(), "message": message}),
        "authority" => {
            let error = if throttled {
                "temporarily_unavailable"
            } else {
                "server_error"
            };
            json!({"error": error, "error_description": message, "error_codes": []})
        }
        "appConfiguration" => {
            // Problem types the service names; any other status is a problem without a type
            // (RFC 7807's about:blank), as a refusal by the service's front end is.
            let problem = match status.as_u16() {
                429 => Some("too-many-requests"),
                400 => Some("invalid-argument"),
                s if s >= 500 => Some("internal-error"),
                _ => None,
            };
            let mut body = json!({"title": reason, "detail": message, "status": status.as_u16()});
            if let Some(p) = problem {
                body["type"] = json!(format!("https://azconfig.io/errors/{p}"));
            }
            body
        }
        "apigee" => {
            // Google's canonical status names (AIP-193).
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
            json!({"error": {"code": status.as_u16(), "message": message, "status": name}})
        }
        // ARM: App Service's PascalCase body when throttled (the reference's 429), ARM's own
        // AuthorizationFailed for 403, ARM's shape otherwise.
        "resourceManager" if throttled => json!({
            "Code": "429", "Message": message, "Target": null,
            "Details": [{"Message": message}, {"Code": "429"},
                        {"ErrorEntity": {"ExtendedCode": "51025", "Code": "429", "Message": message}}]
        }),
        "resourceManager" if status == StatusCode::FORBIDDEN => {
            json!({"error": {"code": "AuthorizationFailed", "message": message}})
        }
        _ => {
            let code = if throttled {
                "Throttled".to_string()
            } else {
                reason.replace(' ', "")
            };
            json!({"error": {"code": code, "message": message}})
        }
    }
}

/// A response whose erroring body makes hyper abort the connection before the answer
/// completes.
fn reset() -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, _>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "sandbox fault: reset",
        ))
    });
    let mut response = Body::from_stream(stream).into_response();
    response.extensions_mut().insert(NoAnswer);
    response
}

async fn injected(service: &str, kind: FaultKind, fault: &Fault) -> Response {
    match kind {
        FaultKind::Status => {
            let status = StatusCode::from_u16(fault.status.unwrap_or(503))
                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let mut response = json_response(status, fault_body(service, status));
            if service == "appConfiguration" {
                response.headers_mut().insert(
                    "content-type",
                    HeaderValue::from_static("application/problem+json; charset=utf-8"),
                );
            }
            if let Some(seconds) = fault.retry_after_seconds {
                let headers = response.headers_mut();
                headers.insert("retry-after", HeaderValue::from(seconds));
                if service == "appConfiguration" {
                    headers.insert("retry-after-ms", HeaderValue::from(seconds * 1000));
                }
                if service == "resourceManager" {
                    headers.insert(
                        "x-ms-ratelimit-remaining-subscription-writes",
                        HeaderValue::from(0u64),
                    );
                }
            }
            response
        }
        FaultKind::Reset | FaultKind::Lost => reset(),
        FaultKind::Timeout => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        FaultKind::Malformed => {
            let mut response = (StatusCode::OK, "{\"value\": \"trunc").into_response();
            response
                .headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(json: serde_json::Value) -> Fault {
        serde_json::from_value(json).unwrap()
    }

    /// A fault with `times` is consumed; one without stays until cleared; `match` filters paths.
    #[test]
    fn faults_are_consumed_and_matched_by_path() {
        let log = RequestLog::default();
        log.add_fault(fault(serde_json::json!({"service": "keyVault", "match": "/secrets/a", "status": 503, "times": 2})));
        log.add_fault(fault(
            serde_json::json!({"service": "apigee", "status": 500}),
        ));
        assert!(log.take_fault("keyVault", "GET", "/secrets/b").is_none());
        assert!(log.take_fault("keyVault", "GET", "/secrets/a").is_some());
        assert!(log.take_fault("keyVault", "PUT", "/secrets/a").is_some());
        assert!(log.take_fault("keyVault", "GET", "/secrets/a").is_none());
        for _ in 0..3 {
            assert!(log.take_fault("apigee", "GET", "/v1/x").is_some());
        }
        log.clear_faults();
        assert!(log.take_fault("apigee", "GET", "/v1/x").is_none());
    }

    /// `method` narrows a fault to one method; `match` also sees the query.
    #[test]
    fn faults_can_pick_a_method_and_a_query() {
        let log = RequestLog::default();
        log.add_fault(fault(serde_json::json!({"service": "applicationApi", "match": "appName=b", "method": "get", "status": 503})));
        assert!(log
            .take_fault("applicationApi", "GET", "/keys?appName=a")
            .is_none());
        assert!(log
            .take_fault("applicationApi", "POST", "/keys?appName=b")
            .is_none());
        assert!(log
            .take_fault("applicationApi", "GET", "/keys?appName=b")
            .is_some());
    }

    /// Bad specs are refused with the field that is wrong.
    #[test]
    fn fault_validation_names_the_field() {
        let bad = fault(serde_json::json!({"service": "vault", "status": 503}));
        assert!(bad.validate().unwrap_err().starts_with("service:"));
        let bad = fault(serde_json::json!({"service": "keyVault", "kind": "status"}));
        assert!(bad.validate().unwrap_err().starts_with("status:"));
        let ok = fault(serde_json::json!({"service": "keyVault", "kind": "reset", "times": 1}));
        assert!(ok.validate().is_ok());
        assert!(serde_json::from_value::<Fault>(
            serde_json::json!({"service": "keyVault", "typo": 1})
        )
        .is_err());
    }
}
