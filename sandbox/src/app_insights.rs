//! Application Insights' ingestion endpoint (the "Breeze" track API the official SDKs and
//! exporters post to, `<IngestionEndpoint>/v2.1/track`). It takes what the service takes: a
//! JSON array of envelopes, or newline-delimited JSON (one envelope per line), uncompressed
//! (the service also takes `Content-Encoding: gzip`, which neither the product nor the official
//! exporter sends; the double does not decode it); and refuses what it refuses, in its own
//! answer shape, `{"itemsReceived",
//! "itemsAccepted", "errors": [{"index", "statusCode", "message"}]}`:
//!
//! - an envelope whose `iKey` is not this resource's instrumentation key (`400`: "Invalid
//!   instrumentation key");
//! - an envelope without `name` or a parseable `time`, without `data.baseType` and
//!   `data.baseData`, or whose `baseData` lacks what its type requires (`ver`; `message` for
//!   `MessageData`, `name` for `EventData`), with a `severityLevel` outside the enumeration
//!   (`0`-`4` or its names), or with properties that are not strings: `400` for that item;
//! - a body that is not JSON (`400`, no item received).
//!
//! All accepted: `200`; some: `206` with the errors of the others; none: `400`. What was
//! accepted is recorded in order, each envelope as received, in `admin/state` under
//! `appInsights`. No authentication: the instrumentation key is the resource's address, as it
//! is with the service's default (local authentication on).

use super::double::{Double, Platform, Shown};
use super::json_response;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

/// The track paths: the SDKs post to `v2.1`; `v2` is the older one, still served. The
/// portal's connection strings end the `IngestionEndpoint` with `/`, and the official exporter
/// appends `/v2.1/track` to it as it is: the service takes the doubled slash too.
pub(crate) const PATHS: [&str; 4] = ["/v2.1/track", "/v2/track", "//v2.1/track", "//v2/track"];

/// The Application Insights resource: its instrumentation key and what it accepted.
pub(crate) struct AppInsights {
    /// `https://127.0.0.1:<port>` (the connection string's `IngestionEndpoint`).
    pub base_url: String,
    /// The resource's instrumentation key (a GUID).
    pub instrumentation_key: String,
    accepted: Mutex<Vec<Value>>,
}

impl AppInsights {
    /// A resource with a fresh instrumentation key, ingesting at `base_url`.
    pub fn new(base_url: &str) -> Self {
        Self {
            base_url: base_url.to_string(),
            instrumentation_key: uuid::Uuid::new_v4().to_string(),
            accepted: Mutex::default(),
        }
    }

    /// The resource's connection string, as the portal shows it
    /// (`APPLICATIONINSIGHTS_CONNECTION_STRING`).
    pub fn connection_string(&self) -> String {
        format!(
            "InstrumentationKey={};IngestionEndpoint={}/;LiveEndpoint={}/",
            self.instrumentation_key, self.base_url, self.base_url
        )
    }
}

impl Double for AppInsights {
    fn service(&self) -> &'static str {
        "appInsights"
    }

    fn router(self: Arc<Self>, _platform: Arc<Platform>) -> Router {
        PATHS
            .iter()
            .fold(Router::new(), |r, p| r.route(p, post(track)))
            .with_state(self)
    }

    fn state(&self) -> Option<Shown> {
        Some(Shown {
            section: "appInsights",
            instance: None,
            value: json!({
                "instrumentationKey": self.instrumentation_key,
                "accepted": self.accepted.lock().unwrap().clone(),
            }),
        })
    }
}

/// The envelopes of a body: a JSON array, one JSON object, or one object per line.
fn envelopes(body: &[u8]) -> Option<Vec<Value>> {
    let text = std::str::from_utf8(body).ok()?.trim();
    if text.starts_with('[') {
        return match serde_json::from_str(text).ok()? {
            Value::Array(items) => Some(items),
            _ => None,
        };
    }
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Why the service would refuse `item`, if it would.
fn refusal(item: &Value, instrumentation_key: &str) -> Option<String> {
    let Some(envelope) = item.as_object() else {
        return Some("Envelope is not a JSON object".into());
    };
    let ikey = envelope.get("iKey").and_then(Value::as_str).unwrap_or("");
    if !ikey.eq_ignore_ascii_case(instrumentation_key) {
        return Some("Invalid instrumentation key".into());
    }
    if envelope
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Some("Field 'name' on type 'Envelope' is required but missing or empty".into());
    }
    let time = envelope.get("time").and_then(Value::as_str).unwrap_or("");
    if time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339).is_err() {
        return Some(
            "Field 'time' on type 'Envelope' is required and must be an ISO 8601 time".into(),
        );
    }
    if let Some(tags) = envelope.get("tags") {
        if !tags
            .as_object()
            .is_some_and(|t| t.values().all(Value::is_string))
        {
            return Some("Field 'tags' on type 'Envelope' must map names to strings".into());
        }
    }
    let data = envelope.get("data");
    let base_type = data
        .and_then(|d| d.get("baseType"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let Some(base) = data
        .and_then(|d| d.get("baseData"))
        .and_then(Value::as_object)
    else {
        return Some("Field 'baseData' on type 'Data' is required but missing".into());
    };
    if base.get("ver").and_then(Value::as_i64).is_none() {
        return Some(format!(
            "Field 'ver' on type '{base_type}' is required but missing"
        ));
    }
    let required = match base_type {
        "MessageData" => "message",
        "EventData" | "MetricData" | "RequestData" | "RemoteDependencyData" => "name",
        "ExceptionData" => "exceptions",
        "" => return Some("Field 'baseType' on type 'Data' is required but missing".into()),
        other => return Some(format!("Unknown baseType '{other}'")),
    };
    if base.get(required).is_none_or(Value::is_null) {
        return Some(format!(
            "Field '{required}' on type '{base_type}' is required but missing"
        ));
    }
    if let Some(level) = base.get("severityLevel") {
        let known = level.as_u64().is_some_and(|n| n <= 4)
            || level.as_str().is_some_and(|n| {
                ["Verbose", "Information", "Warning", "Error", "Critical"].contains(&n)
            });
        if !known {
            return Some(format!(
                "Field 'severityLevel' on type '{base_type}' is not a SeverityLevel"
            ));
        }
    }
    for map in ["properties", "measurements"] {
        if let Some(m) = base.get(map) {
            let ok = m.as_object().is_some_and(|m| {
                m.values().all(|v| {
                    if map == "properties" {
                        v.is_string()
                    } else {
                        v.is_number()
                    }
                })
            });
            if !ok {
                return Some(format!(
                    "Field '{map}' on type '{base_type}' has a value of the wrong type"
                ));
            }
        }
    }
    None
}

async fn track(State(resource): State<Arc<AppInsights>>, body: Bytes) -> Response {
    let Some(items) = envelopes(&body) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"itemsReceived": 0, "itemsAccepted": 0, "errors": [
                {"index": 0, "statusCode": 400, "message": "Invalid JSON: the body is neither a JSON array nor newline-delimited JSON"}
            ]}),
        );
    };
    let mut errors = Vec::new();
    let mut accepted = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match refusal(item, &resource.instrumentation_key) {
            Some(message) => {
                errors.push(json!({"index": index, "statusCode": 400, "message": message}))
            }
            None => accepted.push(item.clone()),
        }
    }
    let status = match (accepted.len(), errors.len()) {
        (_, 0) => StatusCode::OK,
        (0, _) => StatusCode::BAD_REQUEST,
        _ => StatusCode::PARTIAL_CONTENT,
    };
    let body = json!({
        "itemsReceived": items.len(),
        "itemsAccepted": accepted.len(),
        "errors": errors,
    });
    resource.accepted.lock().unwrap().extend(accepted);
    json_response(status, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good(ikey: &str) -> Value {
        json!({
            "name": "Microsoft.ApplicationInsights.Message",
            "time": "2026-11-22T06:00:01.5Z",
            "iKey": ikey,
            "tags": {"ai.operation.id": "run-1"},
            "data": {"baseType": "MessageData", "baseData": {"ver": 2, "message": "hi", "properties": {"app": "A"}}}
        })
    }

    #[test]
    fn what_the_service_refuses() {
        let k = "0b0e0a8e-1f7e-4c1a-9a55-0d3b1d3c8a11";
        assert_eq!(refusal(&good(k), k), None);
        assert_eq!(refusal(&good(&k.to_uppercase()), k), None);
        let tweak = |f: &dyn Fn(&mut Value)| {
            let mut v = good(k);
            f(&mut v);
            refusal(&v, k).expect("refused")
        };
        assert!(
            tweak(&|v| v["iKey"] = json!("11111111-1f7e-4c1a-9a55-0d3b1d3c8a11"))
                .contains("Invalid instrumentation key")
        );
        assert!(tweak(&|v| {
            v.as_object_mut().unwrap().remove("iKey");
        })
        .contains("instrumentation key"));
        assert!(tweak(&|v| {
            v.as_object_mut().unwrap().remove("name");
        })
        .contains("'name'"));
        assert!(tweak(&|v| v["time"] = json!("yesterday")).contains("'time'"));
        assert!(tweak(&|v| v["tags"]["x"] = json!(1)).contains("'tags'"));
        assert!(tweak(&|v| {
            v["data"].as_object_mut().unwrap().remove("baseType");
        })
        .contains("'baseType'"));
        assert!(tweak(&|v| {
            v["data"]["baseData"]
                .as_object_mut()
                .unwrap()
                .remove("message");
        })
        .contains("'message'"));
        assert!(tweak(&|v| {
            v["data"]["baseData"].as_object_mut().unwrap().remove("ver");
        })
        .contains("'ver'"));
        assert!(
            tweak(&|v| v["data"]["baseData"]["properties"]["n"] = json!(3))
                .contains("'properties'")
        );
        assert!(tweak(&|v| v["data"]["baseType"] = json!("EventData")).contains("'name'"));
        assert!(
            tweak(&|v| v["data"]["baseData"]["severityLevel"] = json!(9))
                .contains("'severityLevel'")
        );
        assert!(refusal(&json!([1]), k).is_some());
    }

    #[test]
    fn bodies_are_arrays_or_newline_delimited() {
        let one = good("k").to_string();
        assert_eq!(
            envelopes(format!("[{one},{one}]").as_bytes())
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            envelopes(format!("{one}\n{one}\n").as_bytes())
                .unwrap()
                .len(),
            2
        );
        assert_eq!(envelopes(one.as_bytes()).unwrap().len(), 1);
        assert!(envelopes(b"{not json").is_none());
        assert!(envelopes(format!("{one}\nnope").as_bytes()).is_none());
    }
}
