//! A webhook receiver: stands for a Slack incoming webhook, a Teams Workflows webhook or a
//! generic webhook endpoint, whichever the caller points at it. It answers a `POST` of a JSON
//! body under [`PATH`] with `200` (as all three do on success) and records what it received:
//! the path, the headers a receiver checks (content type, the signature, the event id) and the
//! body as JSON, visible in `admin/state` under `webhooks`. It refuses what the three refuse
//! alike: another method (`405`), a body that is not JSON (`400`). Faults come from the
//! sandbox's fault injection like any double's (service `webhook`).

use super::double::{Double, Platform, Shown};
use super::json_response;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

/// Where the receiver listens: `POST /hooks/<name>` (any name: one per channel).
pub(crate) const PATH: &str = "/hooks";

/// What the receiver got, in order.
pub(crate) struct Receiver {
    /// `https://127.0.0.1:<port>` (hooks at [`PATH`]`/<name>` under it).
    pub base_url: String,
    received: Mutex<Vec<Value>>,
}

impl Receiver {
    /// A receiver that has received nothing, served at `base_url`.
    pub fn new(base_url: &str) -> Self {
        Self {
            base_url: base_url.to_string(),
            received: Mutex::default(),
        }
    }
}

impl Double for Receiver {
    fn service(&self) -> &'static str {
        "webhook"
    }

    fn router(self: Arc<Self>, _platform: Arc<Platform>) -> Router {
        Router::new()
            .route(&format!("{PATH}/{{name}}"), post(receive))
            .with_state(self)
    }

    fn state(&self) -> Option<Shown> {
        Some(Shown {
            section: "webhooks",
            instance: None,
            value: Value::Array(self.received.lock().unwrap().clone()),
        })
    }
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(parsed) = serde_json::from_slice::<Value>(&body) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": {"code": "InvalidPayload", "message": "The body is not JSON."}}),
        );
    };
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    receiver.received.lock().unwrap().push(json!({
        "hook": name,
        "contentType": header("content-type"),
        "signature": header("x-apikeyrotator-signature"),
        "eventId": header("x-apikeyrotator-event-id"),
        // The exact body, so a test can check the signature over the bytes that were signed.
        "rawBody": String::from_utf8_lossy(&body),
        "body": parsed,
    }));
    json_response(StatusCode::OK, json!({"ok": true}))
}
