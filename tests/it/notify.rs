//! Notifications end to end: a real `rotate` against the sandbox with a Slack, a Teams and a
//! generic webhook channel pointed at the webhook receiver double. The payloads arrive with
//! the documented shapes and the webhook's signature; a receiver answering 503 is retried, then
//! reported as a `NOTIFY` warning while the targets are written as before; a dry run sends
//! nothing; no full key is in any payload or output.

use crate::common::{binary, text, Env};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const SECRET: &str = "notify-test-signing-secret";

fn settings(env: &Env) -> BTreeMap<String, String> {
    let hooks = &env.info.endpoints.webhook;
    assert!(!hooks.is_empty(), "sandbox.json has no webhook receiver");
    let all = json!([
        "renewal.done",
        "run.failed",
        "revocation.done",
        "revocation.blocked"
    ]);
    let channels = json!([
        {"type": "slack", "urlSetting": "NOTIFY_URL_SLACK", "events": all},
        {"type": "teams", "urlSetting": "NOTIFY_URL_TEAMS", "events": all},
        {"type": "webhook", "urlSetting": "NOTIFY_URL_HOOK", "secretSetting": "NOTIFY_SECRET_HOOK", "events": all},
    ])
    .to_string();
    let slack = format!("{hooks}/slack");
    let teams = format!("{hooks}/teams");
    let generic = format!("{hooks}/generic");
    env.settings(&[
        ("NOTIFY_CHANNELS", &channels),
        ("NOTIFY_URL_SLACK", &slack),
        ("NOTIFY_URL_TEAMS", &teams),
        ("NOTIFY_URL_HOOK", &generic),
        ("NOTIFY_SECRET_HOOK", SECRET),
    ])
}

fn rotate(settings: &BTreeMap<String, String>, dry_run: bool) -> (Value, String) {
    let mut c = binary();
    c.envs(settings).arg("rotate");
    if dry_run {
        c.arg("--dry-run");
    }
    let out = c.output().unwrap();
    let (stdout, stderr) = text(&out);
    let report =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}:\n{stdout}\n{stderr}"));
    (report, format!("{stdout}\n{stderr}"))
}

async fn received(env: &Env) -> Vec<Value> {
    env.state().await["webhooks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn hmac_hex(body: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn warnings_of<'a>(report: &'a Value, kind: &str) -> Vec<&'a Value> {
    report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["type"] == kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_channels_get_their_payloads_signed_and_without_keys() {
    let env = Env::start().await;
    let settings = settings(&env);

    // A dry run sends nothing.
    let (dry, _) = rotate(&settings, true);
    assert!(dry["summary"]["renewed"].as_u64().unwrap() > 0, "{dry}");
    assert!(received(&env).await.is_empty());

    let (report, output) = rotate(&settings, false);
    let renewed = report["summary"]["renewed"].as_u64().unwrap();
    assert!(renewed > 0, "{report}");
    assert!(warnings_of(&report, "NOTIFY").is_empty(), "{report}");
    let got = received(&env).await;
    let by = |hook: &str| -> Vec<&Value> { got.iter().filter(|r| r["hook"] == hook).collect() };
    let (slack, teams, generic) = (by("slack"), by("teams"), by("generic"));
    // One message per event on each channel: at least one renewal.done per renewed app.
    assert!(generic.len() as u64 >= renewed, "{got:?}");
    assert_eq!(slack.len(), generic.len());
    assert_eq!(teams.len(), generic.len());

    for r in &generic {
        let body = &r["body"];
        let raw = r["rawBody"].as_str().unwrap();
        assert_eq!(
            r["signature"],
            json!(format!("sha256={}", hmac_hex(raw))),
            "{r}"
        );
        assert_eq!(r["eventId"], body["id"]);
        assert_eq!(body["runId"], report["runId"]);
        for field in ["id", "type", "time", "runId", "app"] {
            assert!(body.get(field).is_some(), "{field} missing: {body}");
        }
    }
    let done: Vec<&Value> = generic
        .iter()
        .map(|r| &r["body"])
        .filter(|b| b["type"] == "renewal.done")
        .collect();
    assert_eq!(done.len() as u64, renewed, "{got:?}");
    for b in &done {
        assert!(b["newKey"].as_str().unwrap().starts_with("****"), "{b}");
        assert!(!b["targetsUpdated"].as_array().unwrap().is_empty(), "{b}");
    }
    // Ids are distinct: a receiver deduplicates by them.
    let mut ids: Vec<&str> = generic
        .iter()
        .map(|r| r["eventId"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), generic.len());

    for r in &slack {
        let b = &r["body"];
        assert!(b["text"].is_string(), "{b}");
        let blocks = b["blocks"].as_array().unwrap();
        assert!(blocks.iter().all(|x| x["type"].is_string()), "{b}");
        assert!(blocks
            .iter()
            .any(|x| x["type"] == "section" && x["text"]["type"] == "mrkdwn"));
        assert!(r["signature"].is_null());
    }
    for r in &teams {
        let b = &r["body"];
        assert_eq!(b["type"], "message");
        let a = &b["attachments"][0];
        assert_eq!(a["contentType"], "application/vnd.microsoft.card.adaptive");
        assert_eq!(a["content"]["type"], "AdaptiveCard");
        assert_eq!(a["content"]["version"], "1.4");
        assert!(a["content"]["body"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["type"].is_string()));
    }

    let everything = format!("{}\n{output}\n{}", Value::Array(got.clone()), dry);
    for key in env.all_keys().await {
        assert!(!everything.contains(&key), "a full key leaked");
    }
    // The URLs are secrets: never in the output.
    assert!(!output.contains(&env.info.endpoints.webhook));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_is_retried_then_reported_and_the_targets_are_unaffected() {
    let env = Env::start().await;
    let settings = settings(&env);
    env.add_fault(&json!({"service": "webhook", "match": "/generic", "status": 503}))
        .await;

    let (report, output) = rotate(&settings, false);
    assert!(
        report["summary"]["renewed"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert_eq!(report["summary"]["failed"], 0, "{report}");
    assert!(report["errors"].as_array().unwrap().is_empty(), "{report}");
    let notify = warnings_of(&report, "NOTIFY");
    assert_eq!(notify.len(), 1, "{report}");
    let w = notify[0];
    assert_eq!(w["code"], "NotificationNotDelivered");
    assert_eq!(w["target"], "webhook");
    let message = w["message"].as_str().unwrap();
    assert!(
        message.contains("webhook channel (NOTIFY_URL_HOOK)"),
        "{message}"
    );
    assert!(message.contains("HTTP 503"), "{message}");
    assert!(
        !output.contains(&env.info.endpoints.webhook),
        "a channel URL leaked"
    );

    // Retried: more than one attempt per event reached the receiver, each answered 503; the
    // other channels got theirs.
    let tries: Vec<Value> = env
        .requests()
        .await
        .into_iter()
        .filter(|r| {
            r["service"] == "webhook"
                && r["path"].as_str().unwrap_or_default().ends_with("/generic")
        })
        .collect();
    let events = received(&env)
        .await
        .iter()
        .filter(|r| r["hook"] == "slack")
        .count();
    assert!(events > 0);
    assert!(tries.len() > events, "{tries:?}");
    assert!(tries.iter().all(|r| r["status"] == 503), "{tries:?}");
    assert!(received(&env).await.iter().all(|r| r["hook"] != "generic"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_channels_stop_the_run_at_its_start_and_fail_validate() {
    let env = Env::start().await;
    let mut settings = settings(&env);
    settings.insert(
        "NOTIFY_URL_HOOK".into(),
        "http://hooks.example/secret-token-in-url".into(),
    );
    let expected =
        "NOTIFY_CHANNELS: [2].urlSetting: app setting NOTIFY_URL_HOOK: expected an https URL (http only to loopback)";

    let out = binary()
        .envs(&settings)
        .args(["validate", "--settings"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(expected) || stdout.contains(expected),
        "{stdout}\n{stderr}"
    );

    let out = binary().envs(&settings).arg("rotate").output().unwrap();
    let (stdout, stderr) = text(&out);
    assert_ne!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let all = format!("{stdout}\n{stderr}");
    assert!(all.contains(expected), "{all}");
    assert!(!all.contains("secret-token-in-url"), "{all}");
    // Nothing was changed: the run stopped before the lock and the plan.
    assert!(env.writes().await.is_empty());
    assert!(received(&env).await.is_empty());
}
