//! The contract every double meets, and the little every double shares.
//!
//! A [`Double`] owns its state and knows its service: its name in the request log and in fault
//! specs, the front end it sits behind, its routes, the answer it gives when a fault is
//! injected, and what `admin/state` shows of it. The sandbox's machinery (listeners, the
//! request log and faults, the front-end rules, the admin endpoint) is written against this
//! trait and knows no service by name.

use super::front_end::FrontEnd;
use super::json_response;
use super::limits::{Limit, Limiter};
use super::log::RequestLog;
use super::tokens::TokenStore;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// One double of an outside service, served on a listener of its own.
pub(crate) trait Double: Send + Sync + 'static {
    /// The service's name in the request log and in fault specs (`keyVault`, ...).
    fn service(&self) -> &'static str;

    /// The front end the service sits behind (its framing rules and error pages).
    fn front_end(&self) -> FrontEnd {
        FrontEnd::Azure
    }

    /// The double's routes; handlers reach the tokens and the tenant through `platform`.
    fn router(self: Arc<Self>, platform: Arc<Platform>) -> Router;

    /// The answer to an injected `status` fault, in the service's own error shape, with
    /// `Retry-After` (and the service's own throttling headers) when `retry_after` is set.
    /// The default is Azure's common shape, `{"error": {"code", "message"}}`.
    fn fault(&self, status: StatusCode, retry_after: Option<u64>) -> Response {
        let code = if status == StatusCode::TOO_MANY_REQUESTS {
            "Throttled".to_string()
        } else {
            reason(status).replace(' ', "")
        };
        let body = json!({"error": {"code": code, "message": fault_message(status)}});
        with_retry_after(json_response(status, body), retry_after)
    }

    /// What `admin/state` shows of the double, if anything.
    fn state(&self) -> Option<Shown> {
        None
    }

    /// The published limit `method path` draws from, if the service limits it (see
    /// [`super::limits`]); none by default.
    fn limit(&self, _method: &Method, _path: &str) -> Option<Limit> {
        None
    }

    /// The service's answer when `limit`'s bucket is empty and a token is back after
    /// `retry_after`. The default is [`Double::fault`]'s 429 with `Retry-After`.
    fn throttled(&self, _limit: &Limit, retry_after: Duration) -> Response {
        self.fault(
            StatusCode::TOO_MANY_REQUESTS,
            Some(super::limits::whole_seconds(retry_after)),
        )
    }

    /// Adds the remaining-quota headers the service sends on an admitted request's answer
    /// (`remaining` tokens left in `limit`'s bucket); none by default.
    fn admitted(&self, _limit: &Limit, _remaining: u64, _response: &mut Response) {}
}

/// A double's part of `admin/state`: `value` under `section`, or under `section.instance` for
/// services with one listener per instance (vaults, stores).
pub(crate) struct Shown {
    pub section: &'static str,
    pub instance: Option<String>,
    pub value: Value,
}

/// What every double stands on besides its own state: the tokens the sandbox issued (any
/// double may check a token another issued), the request log (with its faults and latency),
/// and the Entra tenant they all belong to.
pub(crate) struct Platform {
    pub tokens: TokenStore,
    pub log: RequestLog,
    pub tenant: Tenant,
    /// The services' published limits, when the sandbox enforces them.
    pub limits: Limiter,
}

/// The sandbox's Entra tenant.
pub(crate) struct Tenant {
    /// The tenant ID (`AZURE_TENANT_ID`).
    pub id: String,
    /// `https://127.0.0.1:<port>` of the authority double, named in every Azure challenge.
    pub authority: String,
}

/// A status's reason phrase (`Service Unavailable`).
pub(crate) fn reason(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}

/// The message of every injected fault's body.
pub(crate) fn fault_message(status: StatusCode) -> String {
    format!("{} (fault injected by the sandbox).", reason(status))
}

/// `response` with `Retry-After: seconds` when set.
pub(crate) fn with_retry_after(mut response: Response, seconds: Option<u64>) -> Response {
    if let Some(seconds) = seconds {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from(seconds));
    }
    response
}
