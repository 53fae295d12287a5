//! Application Insights: the log events' fields as custom dimensions.
//!
//! A Functions custom handler's stdout reaches Application Insights only as the text of a
//! trace (the host logs each line it reads; the invocation answer's `Logs` are plain strings
//! too): the JSON fields of [`crate::logging`]'s lines never become `customDimensions`. So the
//! process sends its own telemetry, as the official SDKs do, to the ingestion endpoint that
//! `APPLICATIONINSIGHTS_CONNECTION_STRING` names (`<IngestionEndpoint>/v2.1/track`, the Breeze
//! envelopes): every log event at `info` or above becomes a trace (`MessageData`) whose
//! `customDimensions` are the event's fields as strings, plus `level` and the `run_id` of the
//! run it happens in (the [`crate::logging::RUN_SPAN`] span); an event with an [`EVENT_FIELD`] field becomes a custom
//! event of that name instead (`EventData`: [`RUN_ENDED`], [`KEY_RENEWED`], [`KEY_STATE`]).
//! The operation ID (`operation_Id`) is the run ID.
//!
//! It ships exactly the fields the log lines carry, which hold keys only in
//! [`crate::secret::ApiKey`] (redacted when formatted): no full key is ever sent.
//!
//! Sending never blocks or fails a run: events go into a bounded buffer ([`CAPACITY`]; when
//! it is full an event is dropped and counted, and the count is sent with the next batch);
//! one thread of its own posts them in batches, every [`INTERVAL`] or when a batch is full,
//! and when a run ends ([`flush`], which waits at most [`FLUSH_WAIT`]) or the process stops
//! ([`shutdown`]). A refused batch is counted and written to the log, not retried. Without
//! the setting (the command line on premises) nothing is started and nothing is sent.

use crate::secret::ApiKey;
use serde_json::{json, Map, Value};
use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The app setting naming the Application Insights resource (set by the template, and by
/// the Functions platform when the app is linked to one).
pub const CONNECTION_STRING_SETTING: &str = "APPLICATIONINSIGHTS_CONNECTION_STRING";
/// A log event with this field is sent as a custom event named by its value.
pub const EVENT_FIELD: &str = "event";
/// Custom event: a rotation run ended (`dry_run`, `updated`, `unchanged`, `failed`,
/// `renewed`, `duration_ms`).
pub const RUN_ENDED: &str = "RunEnded";
/// Custom event: the API manager renewed an app's key (`app`, `key`).
pub const KEY_RENEWED: &str = "KeyRenewed";
/// Custom event, once per app and run: the app's current key and when it expires (`app`,
/// `key`, `expires_at`, `days_left`; both empty when the key never expires).
pub const KEY_STATE: &str = "KeyState";
/// The custom events the process sends.
pub const EVENTS: [&str; 3] = [RUN_ENDED, KEY_RENEWED, KEY_STATE];
/// The `customDimensions` the workbook and the alert rule of `infra/azuredeploy.json` query:
/// every one is a field of a log event (or a span's) the process sends (`tests/it/infra.rs`
/// checks the queries use exactly these; `tests/it/app_insights.rs` that a run sends them).
pub const DIMENSIONS: [&str; 13] = [
    "run_id",
    "dry_run",
    "app",
    "target",
    "target_kind",
    "code",
    "key",
    "updated",
    "unchanged",
    "failed",
    "renewed",
    "duration_ms",
    "expires_at",
];
/// `ai.internal.sdkVersion` of everything the process sends (the `sdkVersion` column): what
/// tells its telemetry from the host's own (which logs the same lines as plain traces).
pub const SDK_VERSION: &str = concat!("apikey-rotator:", env!("CARGO_PKG_VERSION"));
/// Events held before sending; beyond it they are dropped and counted.
pub const CAPACITY: usize = 2048;
/// Envelopes per request.
pub const BATCH: usize = 256;
/// The longest an event waits in the buffer.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// The longest [`flush`] and [`shutdown`] wait for the buffer to be sent.
pub const FLUSH_WAIT: Duration = Duration::from_secs(3);
/// Timeout of one request to the ingestion endpoint.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The parts of a connection string the process uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// `InstrumentationKey`: the resource the telemetry belongs to (not a secret: browsers
    /// carry it).
    pub instrumentation_key: String,
    /// `IngestionEndpoint` (or the one `EndpointSuffix`/`Location` give, else the global
    /// one), without a trailing `/`.
    pub ingestion_endpoint: String,
}

impl ConnectionString {
    /// Parses `Key=Value;...` as the official SDKs do (keys case-insensitive). Errors name
    /// what is wrong, never quote the value.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut parts = BTreeMap::new();
        for pair in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                format!("{CONNECTION_STRING_SETTING}: want Key=Value pairs separated by ';'")
            })?;
            parts.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        if let Some(auth) = parts.get("authorization") {
            if !auth.eq_ignore_ascii_case("ikey") {
                return Err(format!(
                    "{CONNECTION_STRING_SETTING}: Authorization={auth} is not supported (only the instrumentation key)"
                ));
            }
        }
        let key = parts
            .get("instrumentationkey")
            .ok_or_else(|| format!("{CONNECTION_STRING_SETTING}: InstrumentationKey is missing"))?;
        if uuid::Uuid::try_parse(key).is_err() {
            return Err(format!(
                "{CONNECTION_STRING_SETTING}: InstrumentationKey is not a GUID"
            ));
        }
        let endpoint = match (parts.get("ingestionendpoint"), parts.get("endpointsuffix")) {
            (Some(e), _) => e.trim_end_matches('/').to_string(),
            (None, Some(suffix)) => match parts.get("location") {
                Some(l) => format!("https://{l}.dc.{suffix}"),
                None => format!("https://dc.{suffix}"),
            },
            (None, None) => "https://dc.services.visualstudio.com".to_string(),
        };
        if !endpoint.starts_with("https://") {
            return Err(format!(
                "{CONNECTION_STRING_SETTING}: IngestionEndpoint must be an https URL"
            ));
        }
        Ok(Self {
            instrumentation_key: key.to_ascii_lowercase(),
            ingestion_endpoint: endpoint,
        })
    }

    /// Where envelopes are posted.
    pub fn track_url(&self) -> String {
        format!("{}/v2.1/track", self.ingestion_endpoint)
    }
}

/// What every envelope carries besides its data.
#[derive(Debug, Clone)]
struct Common {
    instrumentation_key: String,
    tags: Map<String, Value>,
}

impl Common {
    fn from_env(cs: &ConnectionString) -> Self {
        let env = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
        let mut tags = Map::new();
        tags.insert(
            "ai.cloud.role".into(),
            json!(env("WEBSITE_SITE_NAME").unwrap_or_else(|| "apikey-rotator".into())),
        );
        if let Some(instance) = env("WEBSITE_INSTANCE_ID").or_else(|| env("HOSTNAME")) {
            tags.insert("ai.cloud.roleInstance".into(), json!(instance));
        }
        tags.insert("ai.internal.sdkVersion".into(), json!(SDK_VERSION));
        Self {
            instrumentation_key: cs.instrumentation_key.clone(),
            tags,
        }
    }
}

/// The `severityLevel` of a `tracing` level, a number as the official exporter sends it
/// (`0` Verbose, `1` Information, `2` Warning, `3` Error, `4` Critical; the `severityLevel`
/// column of `traces`).
pub fn severity(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 2,
        Level::INFO => 1,
        _ => 0,
    }
}

/// One envelope: a custom event when `fields` has [`EVENT_FIELD`], else a trace of `message`.
/// `fields` become `properties` (`customDimensions`); `run_id` among them is also the
/// operation ID.
fn envelope(
    context: &Common,
    time: OffsetDateTime,
    level: &Level,
    message: &str,
    mut fields: BTreeMap<String, String>,
) -> Value {
    let mut tags = context.tags.clone();
    if let Some(run) = fields.get("run_id") {
        tags.insert("ai.operation.id".into(), json!(run));
    }
    fields.insert("level".into(), level.as_str().to_string());
    let event = fields.remove(EVENT_FIELD);
    let (name, data) = match event {
        Some(event) => {
            fields.insert("message".into(), message.to_string());
            (
                "Microsoft.ApplicationInsights.Event",
                json!({"baseType": "EventData", "baseData": {"ver": 2, "name": event, "properties": fields}}),
            )
        }
        None => (
            "Microsoft.ApplicationInsights.Message",
            json!({"baseType": "MessageData", "baseData": {
                "ver": 2,
                // The ingestion endpoint cuts messages at 32768 characters.
                "message": truncate(message, 32_768),
                "severityLevel": severity(level),
                "properties": fields,
            }}),
        ),
    };
    json!({
        "name": name,
        "time": crate::rfc3339::format(time, crate::rfc3339::Fraction::AsNeeded),
        "iKey": context.instrumentation_key,
        "tags": tags,
        "data": data,
    })
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((at, _)) => &s[..at],
        None => s,
    }
}

/// The fields of an event or span, as strings (what the JSON log line shows of each).
#[derive(Default)]
struct Fields {
    message: String,
    values: BTreeMap<String, String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `%x` fields arrive here formatted with `Display`, `?x` with `Debug`: both are the
        // redacting impls for keys.
        self.put(field, format!("{value:?}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.to_string());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.to_string());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.to_string());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.to_string());
    }
}

impl Fields {
    fn put(&mut self, field: &Field, value: String) {
        match field.name() {
            "message" => self.message = value,
            // `log` records bridged into tracing carry these; the JSON lines drop them too.
            n if n.starts_with("log.") => {}
            n => {
                self.values.insert(n.to_string(), value);
            }
        }
    }
}

/// A span's fields, kept in its extensions for the events inside it.
struct SpanFields(BTreeMap<String, String>);

thread_local! {
    /// Set on the sending thread: its own events (the HTTP client's) are never sent.
    static SENDER_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// The buffer between the layer and the sending thread.
struct Pipeline {
    state: Mutex<Buffer>,
    wake: Condvar,
    dropped: AtomicU64,
    refused: AtomicU64,
}

#[derive(Default)]
struct Buffer {
    items: VecDeque<Value>,
    flushes: Vec<tokio::sync::oneshot::Sender<()>>,
    stopping: bool,
}

impl Pipeline {
    fn new() -> Self {
        Self {
            state: Mutex::default(),
            wake: Condvar::new(),
            dropped: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Queues `item`, or drops and counts it when the buffer is full. Never waits.
    fn push(&self, item: Value) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.items.len() >= CAPACITY || state.stopping {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        state.items.push_back(item);
        if state.items.len() >= BATCH {
            self.wake.notify_one();
        }
    }

    fn request_flush(&self, done: tokio::sync::oneshot::Sender<()>, stop: bool) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.flushes.push(done);
        state.stopping |= stop;
        self.wake.notify_one();
    }

    /// Waits until there is a batch to send (or a flush to answer): the batch, the flushes
    /// answered once it is sent (when it empties the buffer), and whether to stop after it.
    fn next_batch(&self) -> (Vec<Value>, Vec<tokio::sync::oneshot::Sender<()>>, bool) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut oldest: Option<Instant> = None;
        loop {
            if !state.items.is_empty() && oldest.is_none() {
                oldest = Some(Instant::now());
            }
            let due = oldest.is_some_and(|t| t.elapsed() >= INTERVAL);
            if state.stopping || !state.flushes.is_empty() || state.items.len() >= BATCH || due {
                break;
            }
            let wait = oldest.map_or(INTERVAL, |t| INTERVAL.saturating_sub(t.elapsed()));
            state = self
                .wake
                .wait_timeout(state, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let n = state.items.len().min(BATCH);
        let batch: Vec<Value> = state.items.drain(..n).collect();
        let flushes = if state.items.is_empty() {
            std::mem::take(&mut state.flushes)
        } else {
            Vec::new()
        };
        (batch, flushes, state.stopping && state.items.is_empty())
    }
}

static PIPELINE: OnceLock<Arc<Pipeline>> = OnceLock::new();

/// The `tracing` layer that turns events into envelopes (see the module's docs).
pub struct Layer {
    context: Common,
    pipeline: Arc<Pipeline>,
}

/// The layer for the connection string in the environment, with its sending thread started;
/// `None` (and nothing started) when the setting is absent or empty. A bad connection string
/// is the error (telemetry stays off; the caller logs it once the subscriber is installed).
pub fn layer_from_env() -> Result<Option<Layer>, String> {
    let Some(cs) = std::env::var(CONNECTION_STRING_SETTING)
        .ok()
        .filter(|v| !v.trim().is_empty())
    else {
        return Ok(None);
    };
    let cs = ConnectionString::parse(&cs)?;
    let pipeline = PIPELINE.get_or_init(|| Arc::new(Pipeline::new())).clone();
    let context = Common::from_env(&cs);
    let ca = std::env::var(crate::azure::http::TRUSTED_CA_SETTING)
        .ok()
        .and_then(|path| std::fs::read(path).ok());
    let sender = pipeline.clone();
    let url = cs.track_url();
    let started = std::thread::Builder::new()
        .name("telemetry".into())
        .spawn(move || send_loop(&sender, &url, ca.as_deref()));
    match started {
        Ok(_) => Ok(Some(Layer { context, pipeline })),
        Err(e) => Err(format!("cannot start the telemetry thread: {e}")),
    }
}

impl<S> tracing_subscriber::Layer<S> for Layer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        // Only the run's own span: other crates' spans carry fields nobody reviewed.
        if attrs.metadata().name() != crate::logging::RUN_SPAN {
            return;
        }
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields.values));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        values.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            if let Some(SpanFields(map)) = span.extensions_mut().get_mut::<SpanFields>() {
                map.extend(fields.values);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if SENDER_THREAD.with(Cell::get) {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(map)) = span.extensions().get::<SpanFields>() {
                    for (k, v) in map {
                        fields.values.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
            }
        }
        let item = envelope(
            &self.context,
            OffsetDateTime::now_utc(),
            event.metadata().level(),
            &fields.message,
            fields.values,
        );
        self.pipeline.push(item);
    }
}

/// The sending thread: batches from the buffer, posted with a client of its own on a runtime
/// of its own, until [`shutdown`].
fn send_loop(pipeline: &Pipeline, url: &str, ca: Option<&[u8]>) {
    SENDER_THREAD.with(|s| s.set(true));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let client = crate::azure::http::build_client(ca, REQUEST_TIMEOUT)
        .or_else(|_| crate::azure::http::build_client(None, REQUEST_TIMEOUT));
    let (Ok(runtime), Ok(client)) = (runtime, client) else {
        eprintln!("telemetry: cannot start the sender; nothing is sent to Application Insights");
        return;
    };
    let mut reported_drops = 0;
    loop {
        let (mut batch, flushes, stop) = pipeline.next_batch();
        let dropped = pipeline.dropped.load(Ordering::Relaxed);
        if dropped > reported_drops && !batch.is_empty() {
            batch.push(drop_notice(&batch[0], dropped - reported_drops));
            reported_drops = dropped;
        }
        if !batch.is_empty() {
            runtime.block_on(post(&client, url, &batch, pipeline));
        }
        for done in flushes {
            let _ = done.send(());
        }
        if stop {
            return;
        }
    }
}

/// A trace saying `n` events were dropped, with the context of `like`.
fn drop_notice(like: &Value, n: u64) -> Value {
    let mut notice = like.clone();
    notice["name"] = json!("Microsoft.ApplicationInsights.Message");
    notice["data"] = json!({"baseType": "MessageData", "baseData": {
        "ver": 2,
        "message": format!("telemetry: {n} events were dropped (the buffer of {CAPACITY} was full)"),
        "severityLevel": severity(&Level::WARN),
        "properties": {"level": "WARN", "dropped": n.to_string()},
    }});
    notice
}

async fn post(client: &reqwest::Client, url: &str, batch: &[Value], pipeline: &Pipeline) {
    let body = Value::Array(batch.to_vec()).to_string();
    let sent = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    let (status, answer) = match sent {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
        Err(e) => {
            pipeline
                .refused
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            tracing::warn!(items = batch.len(), error = %e, "Application Insights could not be reached; telemetry lost");
            return;
        }
    };
    let accepted = answer["itemsAccepted"]
        .as_u64()
        .unwrap_or(if status == 200 { batch.len() as u64 } else { 0 });
    let lost = (batch.len() as u64).saturating_sub(accepted);
    if lost > 0 {
        pipeline.refused.fetch_add(lost, Ordering::Relaxed);
        // The service's own message (it names a field, not a value), cut short.
        let why = answer["errors"][0]["message"].as_str().unwrap_or("");
        tracing::warn!(
            status,
            items = batch.len(),
            accepted,
            why = truncate(why, 200),
            "Application Insights refused telemetry"
        );
    }
}

/// Sends what the buffer holds and waits until it is sent, at most [`FLUSH_WAIT`] (a run's
/// end: its telemetry is not left waiting for the next). Does nothing when telemetry is off.
pub async fn flush() {
    wait_sent(false).await;
}

/// [`flush`], then stops the sending thread; later events are dropped.
pub async fn shutdown() {
    wait_sent(true).await;
}

async fn wait_sent(stop: bool) {
    let Some(pipeline) = PIPELINE.get() else {
        return;
    };
    let (done, sent) = tokio::sync::oneshot::channel();
    pipeline.request_flush(done, stop);
    let _ = tokio::time::timeout(FLUSH_WAIT, sent).await;
}

/// Events dropped because the buffer was full, and events the ingestion endpoint refused or
/// never got, since the process started.
pub fn lost() -> (u64, u64) {
    PIPELINE.get().map_or((0, 0), |p| {
        (
            p.dropped.load(Ordering::Relaxed),
            p.refused.load(Ordering::Relaxed),
        )
    })
}

/// Logs the [`KEY_STATE`] event of `app` (sent to Application Insights as a custom event):
/// its current key, redacted, and when it expires, for the workbook's keys nearing expiry.
pub fn key_state(app: &str, key: &ApiKey, expires_at: Option<OffsetDateTime>) {
    let (expires, days_left) = match expires_at {
        Some(t) => (
            crate::rfc3339::format(t, crate::rfc3339::Fraction::Millis),
            ((t - OffsetDateTime::now_utc()).whole_hours().div_euclid(24)).to_string(),
        ),
        None => (String::new(), String::new()),
    };
    tracing::info!(event = KEY_STATE, app, key = %key, expires_at = expires, days_left, "key state");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> Common {
        let cs = ConnectionString::parse(
            "InstrumentationKey=0b0e0a8e-1f7e-4c1a-9a55-0d3b1d3c8a11;IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/",
        )
        .unwrap();
        Common {
            instrumentation_key: cs.instrumentation_key,
            tags: Map::from_iter([("ai.cloud.role".to_string(), json!("func-x"))]),
        }
    }

    #[test]
    fn connection_strings_parse_as_the_sdks_do() {
        let cs = ConnectionString::parse(
            "InstrumentationKey=0B0E0A8E-1F7E-4C1A-9A55-0D3B1D3C8A11;IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/;LiveEndpoint=https://westeurope.livediagnostics.monitor.azure.com/;ApplicationId=x",
        )
        .unwrap();
        assert_eq!(
            cs.track_url(),
            "https://westeurope-5.in.applicationinsights.azure.com/v2.1/track"
        );
        assert_eq!(
            cs.instrumentation_key,
            "0b0e0a8e-1f7e-4c1a-9a55-0d3b1d3c8a11"
        );
        let suffix = ConnectionString::parse(
            "instrumentationkey=0b0e0a8e-1f7e-4c1a-9a55-0d3b1d3c8a11;EndpointSuffix=applicationinsights.azure.cn;Location=chinaeast2",
        )
        .unwrap();
        assert_eq!(
            suffix.ingestion_endpoint,
            "https://chinaeast2.dc.applicationinsights.azure.cn"
        );
        let global =
            ConnectionString::parse("InstrumentationKey=0b0e0a8e-1f7e-4c1a-9a55-0d3b1d3c8a11")
                .unwrap();
        assert_eq!(
            global.ingestion_endpoint,
            "https://dc.services.visualstudio.com"
        );
        for (bad, why) in [
            ("IngestionEndpoint=https://x", "InstrumentationKey is missing"),
            ("InstrumentationKey=secret-ish", "not a GUID"),
            ("InstrumentationKey", "Key=Value"),
            (
                "InstrumentationKey=0b0e0a8e-1f7e-4c1a-9a55-0d3b1d3c8a11;Authorization=AAD",
                "Authorization=AAD is not supported",
            ),
            (
                "InstrumentationKey=0b0e0a8e-1f7e-4c1a-9a55-0d3b1d3c8a11;IngestionEndpoint=http://x",
                "https",
            ),
        ] {
            let e = ConnectionString::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(e.starts_with(CONNECTION_STRING_SETTING), "{e}");
            assert!(!e.contains("secret-ish"), "{e}");
        }
    }

    #[test]
    fn a_log_event_is_a_trace_with_its_fields_as_properties() {
        let fields = BTreeMap::from([
            ("run_id".to_string(), "run-7".to_string()),
            ("app".to_string(), "App1".to_string()),
            ("code".to_string(), "Forbidden".to_string()),
        ]);
        let time = time::macros::datetime!(2026-11-22 06:00:01.5 UTC);
        let e = envelope(&context(), time, &Level::WARN, "target failed", fields);
        assert_eq!(e["name"], "Microsoft.ApplicationInsights.Message");
        assert_eq!(e["time"], "2026-11-22T06:00:01.5Z");
        assert_eq!(e["iKey"], "0b0e0a8e-1f7e-4c1a-9a55-0d3b1d3c8a11");
        assert_eq!(e["tags"]["ai.operation.id"], "run-7");
        assert_eq!(e["tags"]["ai.cloud.role"], "func-x");
        let data = &e["data"];
        assert_eq!(data["baseType"], "MessageData");
        assert_eq!(data["baseData"]["ver"], 2);
        assert_eq!(data["baseData"]["message"], "target failed");
        assert_eq!(data["baseData"]["severityLevel"], 2);
        assert_eq!(
            data["baseData"]["properties"],
            json!({"app": "App1", "code": "Forbidden", "level": "WARN", "run_id": "run-7"})
        );
    }

    #[test]
    fn an_event_field_makes_a_custom_event_and_no_run_no_operation() {
        let fields = BTreeMap::from([
            (EVENT_FIELD.to_string(), RUN_ENDED.to_string()),
            ("failed".to_string(), "2".to_string()),
        ]);
        let e = envelope(
            &context(),
            OffsetDateTime::now_utc(),
            &Level::INFO,
            "rotation run finished",
            fields,
        );
        assert_eq!(e["name"], "Microsoft.ApplicationInsights.Event");
        assert_eq!(e["data"]["baseType"], "EventData");
        assert_eq!(e["data"]["baseData"]["name"], RUN_ENDED);
        let props = &e["data"]["baseData"]["properties"];
        assert_eq!(props["failed"], "2");
        assert_eq!(props["message"], "rotation run finished");
        assert!(props.get(EVENT_FIELD).is_none());
        assert!(e["tags"].get("ai.operation.id").is_none());
    }

    #[test]
    fn levels_map_to_severities() {
        assert_eq!(severity(&Level::ERROR), 3);
        assert_eq!(severity(&Level::WARN), 2);
        assert_eq!(severity(&Level::INFO), 1);
        assert_eq!(severity(&Level::DEBUG), 0);
        assert_eq!(truncate("abcdef", 3), "abc");
        assert_eq!(truncate("ab", 3), "ab");
    }

    #[test]
    fn a_full_buffer_drops_and_counts_and_never_waits() {
        let p = Pipeline::new();
        for i in 0..CAPACITY + 5 {
            p.push(json!(i));
        }
        assert_eq!(p.dropped.load(Ordering::Relaxed), 5);
        let (batch, _, stop) = p.next_batch();
        assert_eq!(batch.len(), BATCH, "a full batch is ready at once");
        assert_eq!(batch[0], json!(0));
        assert!(!stop);
        let (done, _rx) = tokio::sync::oneshot::channel();
        p.request_flush(done, true);
        let mut sent = BATCH;
        loop {
            let (batch, flushes, stop) = p.next_batch();
            sent += batch.len();
            if stop {
                assert_eq!(
                    flushes.len(),
                    1,
                    "the flush is answered with the last batch"
                );
                break;
            }
            assert!(flushes.is_empty());
        }
        assert_eq!(sent, CAPACITY);
        p.push(json!("late"));
        assert_eq!(p.dropped.load(Ordering::Relaxed), 6, "after shutdown");
    }

    #[test]
    fn the_layer_sends_the_redacted_fields_and_the_spans_run_id() {
        use tracing_subscriber::layer::SubscriberExt;
        let pipeline = Arc::new(Pipeline::new());
        let layer = Layer {
            context: context(),
            pipeline: pipeline.clone(),
        };
        let subscriber = tracing_subscriber::registry().with(layer);
        let key = ApiKey::new("abcdefghijklmnopqrstuvwxyz0123456789".to_string());
        tracing::subscriber::with_default(subscriber, || {
            let other = tracing::info_span!("other", secretish = "x");
            let _out = other.enter();
            let span = tracing::info_span!("rotation_run", run_id = tracing::field::Empty);
            assert_eq!(span.metadata().unwrap().name(), crate::logging::RUN_SPAN);
            let _in = span.enter();
            span.record("run_id", "run-9");
            tracing::info!(app = "App1", key = %key, debug = ?key, updated = 3u64, "key renewed");
        });
        let (batch, _, _) = {
            pipeline.request_flush(tokio::sync::oneshot::channel().0, false);
            pipeline.next_batch()
        };
        assert_eq!(batch.len(), 1);
        let e = &batch[0];
        assert_eq!(e["tags"]["ai.operation.id"], "run-9");
        let props = &e["data"]["baseData"]["properties"];
        assert_eq!(props["run_id"], "run-9");
        assert_eq!(props["app"], "App1");
        assert_eq!(props["updated"], "3");
        assert!(
            props.get("secretish").is_none(),
            "only the run's span: {props:?}"
        );
        assert_eq!(e["data"]["baseData"]["message"], "key renewed");
        let all = e.to_string();
        assert!(!all.contains("abcdefghijklmnop"), "{all}");
        assert!(props["key"].as_str().unwrap().ends_with("6789"), "{all}");
    }
}
