//! The request log and fault injection: a middleware around every service router, so every
//! request is recorded (service, method, path, query, status; never bodies) and can be broken on
//! purpose from the admin endpoint.

use super::double::{Double, Platform};
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{from_fn, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    /// Checks the spec against the sandbox's `services`, returning what is wrong with it.
    pub fn validate(&self, services: &[&str]) -> Result<(), String> {
        if !services.contains(&self.service.as_str()) {
            return Err(format!(
                "service: unknown \"{}\"; expected one of {}",
                self.service,
                services.join(", ")
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

/// Wraps `router`, the routes of `double`, so every request to it is logged under the
/// double's service, meets its front end's rules and may meet a fault.
pub(crate) fn observe(router: Router, double: Arc<dyn Double>, platform: &Arc<Platform>) -> Router {
    let platform = platform.clone();
    router.layer(from_fn(move |request: Request, next: Next| {
        let platform = platform.clone();
        let double = double.clone();
        async move { handle(&platform, &*double, request, next).await }
    }))
}

async fn handle(
    platform: &Platform,
    double: &dyn Double,
    request: Request,
    next: Next,
) -> Response {
    let log = &platform.log;
    let service = double.service();
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
        double.front_end(),
        request.method(),
        request.version(),
        request.headers(),
    ) {
        log.finish(id, Some(refused.status().as_u16()));
        return refused;
    }
    // Over its service's published limit: the front door's 429, which takes no token.
    let throttle = super::front_end::throttle(&platform.limits, double, request.method(), &path);
    if let super::front_end::Throttle::Refused(refused) = throttle {
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
                Some(kind) => injected(double, kind, &fault).await,
            }
        }
        None => next.run(request).await,
    };
    let mut response = response;
    if let super::front_end::Throttle::Admitted { limit, remaining } = &throttle {
        double.admitted(limit, *remaining, &mut response);
    }
    let status = response.status().as_u16();
    let never_answers = response.extensions().get::<NoAnswer>().is_some();
    log.finish(id, (!never_answers).then_some(status));
    response
}

/// Marks a response that will never reach the client (reset).
#[derive(Clone, Copy)]
struct NoAnswer;

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

async fn injected(double: &dyn Double, kind: FaultKind, fault: &Fault) -> Response {
    match kind {
        FaultKind::Status => {
            let status = StatusCode::from_u16(fault.status.unwrap_or(503))
                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            double.fault(status, fault.retry_after_seconds)
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
        let services = ["keyVault", "apigee"];
        let message = bad.validate(&services).unwrap_err();
        assert_eq!(
            message,
            "service: unknown \"vault\"; expected one of keyVault, apigee"
        );
        let bad = fault(serde_json::json!({"service": "keyVault", "kind": "status"}));
        assert!(bad.validate(&services).unwrap_err().starts_with("status:"));
        let ok = fault(serde_json::json!({"service": "keyVault", "kind": "reset", "times": 1}));
        assert!(ok.validate(&services).is_ok());
        assert!(serde_json::from_value::<Fault>(
            serde_json::json!({"service": "keyVault", "typo": 1})
        )
        .is_err());
    }
}
