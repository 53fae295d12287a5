//! Application Insights (issue 16, point 4): a run's log fields land as custom dimensions.
//! The handler, given `APPLICATIONINSIGHTS_CONNECTION_STRING`, posts Breeze envelopes to the
//! sandbox's ingestion double; the double is checked against the official exporter
//! (`azure-monitor-opentelemetry-exporter`, run by `tests/oracle/app_insights.py` in the SDK
//! oracle's venv), and our envelopes against what that exporter sends.

use crate::common;

use apikey_rotator::telemetry;
use common::{reference, Env, Handler};
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// What the double accepted, in order.
async fn accepted(env: &Env) -> Vec<Value> {
    env.state().await["appInsights"]["accepted"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The accepted envelopes of run `run_id`, once its `RunEnded` event is among them (the run's
/// end flushes the telemetry before it answers; the wait only covers the double's bookkeeping).
async fn run_envelopes(env: &Env, run_id: &str) -> Vec<Value> {
    for _ in 0..400 {
        let all = accepted(env).await;
        let of_run: Vec<Value> = all
            .into_iter()
            .filter(|e| e["tags"]["ai.operation.id"] == run_id)
            .collect();
        if of_run
            .iter()
            .any(|e| event_name(e) == Some(telemetry::RUN_ENDED))
        {
            return of_run;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!(
        "no RunEnded event of run {run_id}; accepted: {:#}",
        json!(accepted(env).await)
    );
}

fn event_name(e: &Value) -> Option<&str> {
    (e["data"]["baseType"] == "EventData")
        .then(|| e["data"]["baseData"]["name"].as_str())
        .flatten()
}

fn props(e: &Value) -> &serde_json::Map<String, Value> {
    e["data"]["baseData"]["properties"]
        .as_object()
        .expect("properties")
}

fn connection_string(env: &Env) -> String {
    let cs = env.info.endpoints.app_insights.clone();
    assert!(cs.starts_with("InstrumentationKey="), "{cs}");
    cs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_through_the_function_host_lands_its_fields_as_custom_dimensions() {
    let env = Env::start().await;
    let cs = connection_string(&env);
    let handler =
        Handler::start(&env.settings(&[(telemetry::CONNECTION_STRING_SETTING, &cs)])).await;
    // One target fails, so that a failure with its code and target is among the telemetry.
    let fault = json!({"service": "keyVault", "match": "/secrets/orders-prd-apikey", "status": 403, "times": 100});
    env.add_fault(&fault).await;

    let body =
        reference("functions/invoke-request.timer.captured-host-4.24.4.4-ScheduleStatus-null.json");
    let (status, answer) = handler.timer(body).await;
    assert_eq!(status, 500, "a target failed: {answer:#}");
    let report = &answer["ReturnValue"];
    let run_id = report["runId"].as_str().unwrap().to_string();
    let envelopes = run_envelopes(&env, &run_id).await;

    // Every envelope of the run carries the run ID as operation and as a dimension, the role,
    // and our SDK name (what tells it from the host's own traces of the same lines).
    for e in &envelopes {
        assert_eq!(props(e)["run_id"], run_id.as_str(), "{e:#}");
        assert_eq!(e["tags"]["ai.internal.sdkVersion"], telemetry::SDK_VERSION);
        assert_eq!(e["tags"]["ai.cloud.role"], "func-keyrotator-sandbox");
    }
    let traces: Vec<&Value> = envelopes
        .iter()
        .filter(|e| e["data"]["baseType"] == "MessageData")
        .collect();
    let failed = traces
        .iter()
        .find(|e| e["data"]["baseData"]["message"] == "target failed")
        .unwrap_or_else(|| panic!("no 'target failed' trace: {traces:#?}"));
    let p = props(failed);
    assert_eq!(failed["data"]["baseData"]["severityLevel"], 2);
    assert_eq!(p["level"], "WARN");
    assert_eq!(p["target_kind"], "KEY_VAULT");
    assert!(
        p["target"]
            .as_str()
            .unwrap()
            .ends_with("/orders-prd-apikey"),
        "{p:?}"
    );
    assert_eq!(p["code"], report["errors"][0]["code"], "{p:?} / {report:#}");
    let updated = traces
        .iter()
        .find(|e| e["data"]["baseData"]["message"] == "target updated")
        .expect("a 'target updated' trace");
    assert_eq!(updated["data"]["baseData"]["severityLevel"], 1);
    assert!(props(updated)["key"].as_str().unwrap().len() <= 8);

    // The custom events: the run's end with its counts, the renewal, each app's key state.
    let events = |name: &str| -> Vec<&Value> {
        envelopes
            .iter()
            .filter(|e| event_name(e) == Some(name))
            .collect()
    };
    let ended = events(telemetry::RUN_ENDED);
    assert_eq!(ended.len(), 1);
    let p = props(ended[0]);
    for (field, summary) in [
        ("updated", "updated"),
        ("failed", "failed"),
        ("renewed", "renewed"),
    ] {
        assert_eq!(
            p[field],
            report["summary"][summary].to_string(),
            "{field}: {p:?}"
        );
    }
    assert_eq!(p["failed"], "1");
    let renewed = events(telemetry::KEY_RENEWED);
    assert_eq!(renewed.len(), 1, "the first run renews App1");
    assert_eq!(props(renewed[0])["app"], "APIKeyRotator_TestApp1_Sandbox");
    let states = events(telemetry::KEY_STATE);
    let apps: BTreeSet<&str> = states
        .iter()
        .map(|e| props(e)["app"].as_str().unwrap())
        .collect();
    assert_eq!(apps.len(), 3, "one key state per app: {apps:?}");
    assert!(states.iter().any(|e| {
        let p = props(e);
        p["days_left"].as_str().unwrap().parse::<i64>().is_ok()
            && p["expires_at"].as_str().unwrap().ends_with('Z')
    }));

    // Every dimension the workbook and the alert rule query is sent.
    let sent: BTreeSet<&str> = envelopes
        .iter()
        .flat_map(|e| props(e).keys().map(String::as_str))
        .collect();
    for d in telemetry::DIMENSIONS {
        assert!(sent.contains(d), "{d} is never sent; sent: {sent:?}");
    }

    // No full key in anything the double received (nor in the logs).
    let everything = json!(accepted(&env).await).to_string();
    handler.assert_no_key_leaked(&env.all_keys().await, &[&everything]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_connection_string_nothing_is_sent() {
    let env = Env::start().await;
    let handler =
        Handler::start(&env.settings(&[(telemetry::CONNECTION_STRING_SETTING, "")])).await;
    let (status, report) = handler.rotate("").await;
    assert_eq!(status, 200, "{report:#}");
    let sent: Vec<Value> = env
        .requests()
        .await
        .into_iter()
        .filter(|r| r["service"] == "appInsights")
        .collect();
    assert!(sent.is_empty(), "{sent:#?}");
    assert!(accepted(&env).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_connection_string_is_named_and_the_run_goes_on() {
    let env = Env::start().await;
    let handler = Handler::start(&env.settings(&[(
        telemetry::CONNECTION_STRING_SETTING,
        "InstrumentationKey=not-a-guid;IngestionEndpoint=https://127.0.0.1:9/",
    )]))
    .await;
    let (status, report) = handler.rotate("").await;
    assert_eq!(status, 200, "{report:#}");
    let output = handler.output();
    assert!(
        output
            .lines()
            .any(|l| l.contains(telemetry::CONNECTION_STRING_SETTING)
                && l.contains("not a GUID")
                && !l.contains("not-a-guid")),
        "{output}"
    );
}

/// The double's answers to what the service refuses, in the service's shape.
#[tokio::test]
async fn the_double_refuses_unknown_keys_and_incomplete_envelopes() {
    let env = Env::start().await;
    let cs = apikey_rotator::telemetry::ConnectionString::parse(&connection_string(&env)).unwrap();
    let client = env.tls_client();
    let good = json!({
        "name": "Microsoft.ApplicationInsights.Message",
        "time": "2026-11-22T06:00:01.5Z",
        "iKey": cs.instrumentation_key,
        "data": {"baseType": "MessageData", "baseData": {"ver": 2, "message": "hi"}}
    });
    let mut stranger = good.clone();
    stranger["iKey"] = json!("00000000-0000-4000-8000-000000000000");
    let mut incomplete = good.clone();
    incomplete.as_object_mut().unwrap().remove("time");
    let post = |body: String| {
        let client = client.clone();
        let url = cs.track_url();
        async move {
            let r = client.post(url).body(body).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, answer) = post(json!([stranger]).to_string()).await;
    assert_eq!(status, 400);
    assert_eq!(answer["itemsReceived"], 1);
    assert_eq!(answer["itemsAccepted"], 0);
    assert_eq!(answer["errors"][0]["index"], 0);
    assert_eq!(answer["errors"][0]["statusCode"], 400);
    assert!(answer["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("instrumentation key"));
    // Newline-delimited JSON, one good and one incomplete: a partial success.
    let (status, answer) = post(format!("{good}\n{incomplete}\n")).await;
    assert_eq!(status, 206, "{answer}");
    assert_eq!(answer["itemsAccepted"], 1);
    assert_eq!(answer["errors"][0]["index"], 1);
    let (status, answer) = post(json!([good]).to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        json!({"itemsReceived": 1, "itemsAccepted": 1, "errors": []})
    );
    let (status, _) = post("{not json".into()).await;
    assert_eq!(status, 400);
    assert_eq!(accepted(&env).await.len(), 2);
}

/// `v`'s JSON type, for comparing shapes.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every field of `ours` at `path` exists in `official` with the same JSON type.
fn same_shape(ours: &Value, official: &Value, path: &str) {
    let (Some(o), Some(off)) = (ours.as_object(), official.as_object()) else {
        return;
    };
    for (k, v) in o {
        let here = format!("{path}.{k}");
        let Some(w) = off.get(k) else {
            panic!("{here}: the official exporter sends no such field: {official:#}");
        };
        assert_eq!(kind(v), kind(w), "{here}");
        if !matches!(k.as_str(), "tags" | "properties") {
            same_shape(v, w, &here);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_exporter_is_accepted_and_our_envelopes_have_its_shape() {
    let env = Env::start().await;
    let cs = connection_string(&env);
    let python = tokio::task::spawn_blocking(crate::sdk_oracle::python)
        .await
        .unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oracle/app_insights.py");
    let out = tokio::process::Command::new(python)
        .arg(script)
        .arg(&cs)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env("REQUESTS_CA_BUNDLE", &env.info.ca_cert_file)
        .output()
        .await
        .expect("the venv's python runs");
    assert!(
        out.status.success(),
        "the official exporter failed against the double:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let official = accepted(&env).await;
    assert_eq!(official.len(), 2, "{official:#?}");
    let official_trace = official
        .iter()
        .find(|e| e["data"]["baseType"] == "MessageData")
        .expect("the exporter's trace");
    let official_event = official
        .iter()
        .find(|e| e["data"]["baseType"] == "EventData")
        .expect("the exporter's custom event");
    assert_eq!(props(official_trace)["app"], "OracleApp");
    // The severity is a number (2: Warning), as ours is.
    assert_eq!(official_trace["data"]["baseData"]["severityLevel"], 2);
    assert_eq!(official_event["data"]["baseData"]["name"], "RunEnded");

    // Ours, from a run of the handler against the same double.
    let handler =
        Handler::start(&env.settings(&[(telemetry::CONNECTION_STRING_SETTING, &cs)])).await;
    let (status, report) = handler.rotate("").await;
    assert_eq!(status, 200, "{report:#}");
    let ours = run_envelopes(&env, report["runId"].as_str().unwrap()).await;
    let mut seen = BTreeSet::new();
    for e in &ours {
        let official = match e["data"]["baseType"].as_str() {
            Some("MessageData") => official_trace,
            Some("EventData") => official_event,
            other => panic!("we send only traces and events, not {other:?}"),
        };
        same_shape(e, official, "envelope");
        assert_eq!(e["name"], official["name"]);
        seen.insert(e["data"]["baseType"].as_str().unwrap());
        // The tags we send are context tag keys the exporter uses too.
        for tag in e["tags"].as_object().unwrap().keys() {
            assert!(
                official["tags"].get(tag).is_some() || tag == "ai.operation.id",
                "tag {tag}: {:#}",
                official["tags"]
            );
        }
    }
    assert_eq!(seen.len(), 2, "both kinds compared");
}
