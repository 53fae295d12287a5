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
    let all = crate::common::assert_settings_refused(&env, &settings, expected).await;
    assert!(!all.contains("secret-token-in-url"), "{all}");
    // Nothing was sent: the run stopped before the lock and the plan.
    assert!(received(&env).await.is_empty());
}

// ---- renewal.upcoming and target.expiring ---------------------------------------------------

const APP1: &str = "APIKeyRotator_TestApp1_Sandbox";
/// The demo's App2: its current key expires in 200 days, so with the 45-day window it is due
/// for renewal in 155 days, and no run renews it.
const APP2: &str = "APIKeyRotator_TestApp2_Sandbox";
const NOTICE_MARK: &str = "ApiKeyRotatorNoticeSentAt";

/// The three channels, subscribed to `events` only, with `NOTIFY_UPCOMING_DAYS` = `days`.
fn key_event_settings(env: &Env, events: &[&str], days: &str) -> BTreeMap<String, String> {
    let mut s = settings(env);
    let channels = json!([
        {"type": "slack", "urlSetting": "NOTIFY_URL_SLACK", "events": events},
        {"type": "teams", "urlSetting": "NOTIFY_URL_TEAMS", "events": events},
        {"type": "webhook", "urlSetting": "NOTIFY_URL_HOOK", "secretSetting": "NOTIFY_SECRET_HOOK", "events": events},
    ]);
    s.insert("NOTIFY_CHANNELS".into(), channels.to_string());
    s.insert("NOTIFY_UPCOMING_DAYS".into(), days.into());
    s
}

fn rotate_app(settings: &BTreeMap<String, String>, app: &str, dry_run: bool) -> (Value, String) {
    let mut c = binary();
    c.envs(settings).args(["rotate", "--app", app]);
    if dry_run {
        c.arg("--dry-run");
    }
    let out = c.output().unwrap();
    let (stdout, stderr) = text(&out);
    let report =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}:\n{stdout}\n{stderr}"));
    (report, format!("{stdout}\n{stderr}"))
}

/// App2's keys in the Apigee double: (full key, its notice mark if any), in stored order.
async fn notice_marks(env: &Env, app: &str) -> Vec<(String, Option<String>)> {
    let issuer: &dyn crate::common::issuer::IssuerDouble = crate::common::issuer::ISSUERS[0];
    issuer
        .stored_keys(&env.state().await, app)
        .into_iter()
        .map(|k| {
            let mark = k
                .attributes
                .iter()
                .find(|(n, _)| n == NOTICE_MARK)
                .map(|(_, v)| v.clone());
            (k.key, mark)
        })
        .collect()
}

fn shown(key: &str) -> String {
    format!("****{}", &key[key.len() - 4..])
}

/// App2's current key (the one that expires latest) as the double holds it.
async fn current_of_app2(env: &Env) -> String {
    let state = env.state().await;
    let creds = state["apigee"]["apps"][APP2]["credentials"]
        .as_array()
        .unwrap();
    creds
        .iter()
        .max_by_key(|c| c["expiresAt"].as_str().unwrap().parse::<i64>().unwrap())
        .map(|c| c["consumerKey"].as_str().unwrap().to_string())
        .unwrap()
}

/// What arrived of type `kind`, by hook.
async fn arrived(env: &Env, kind: &str) -> Vec<Value> {
    received(env)
        .await
        .into_iter()
        .filter(|r| {
            r["body"]["type"] == kind
                || r["body"]["blocks"][0]["text"]["text"] == kind
                || r["body"]["attachments"][0]["content"]["body"][0]["text"] == kind
        })
        .collect()
}

/// A key due for renewal within the days gets one notice on each channel, in the documented
/// shapes; the mark is then on the key in Apigee, and the next run sends none. A dry run
/// before says what it would send, sends nothing and marks nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upcoming_renewal_is_notified_once_per_key_across_runs() {
    let env = Env::start().await;
    let settings = key_event_settings(&env, &["renewal.upcoming"], "160");
    let current = current_of_app2(&env).await;

    let (dry, dry_out) = rotate_app(&settings, APP2, true);
    assert!(received(&env).await.is_empty(), "a dry run sent something");
    assert!(notice_marks(&env, APP2)
        .await
        .iter()
        .all(|(_, m)| m.is_none()));
    let planned: Vec<&Value> = dry["successes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "NOTIFY")
        .collect();
    assert_eq!(planned.len(), 1, "{dry}");
    let words = planned[0]["message"].as_str().unwrap();
    assert!(
        words.starts_with("Would send renewal.upcoming to 3 channels (NOTIFY_URL_SLACK, NOTIFY_URL_TEAMS, NOTIFY_URL_HOOK): Key "),
        "{words}"
    );
    assert!(words.contains(&shown(&current)), "{words}");

    env.clear_requests().await;
    let (first, out1) = rotate_app(&settings, APP2, false);
    let apigee_writes = |w: Vec<Value>| w.into_iter().filter(|r| r["service"] == "apigee").count();
    assert_eq!(apigee_writes(env.writes().await), 1, "one write: the mark");
    assert_eq!(first["summary"]["renewed"], 0, "{first}");
    assert!(warnings_of(&first, "NOTIFY").is_empty(), "{first}");
    let got = received(&env).await;
    assert_eq!(got.len(), 3, "one message per channel: {got:#?}");
    let generic = got.iter().find(|r| r["hook"] == "generic").unwrap();
    let b = &generic["body"];
    assert_eq!(b["type"], "renewal.upcoming");
    assert_eq!(b["app"], APP2);
    assert_eq!(b["key"], shown(&current));
    let left = b["daysLeft"].as_i64().unwrap();
    assert!((153..=155).contains(&left), "{b}");
    assert!(b["renewalDueAt"].as_str().unwrap().ends_with('Z'), "{b}");
    assert!(b["expiresAt"].is_string(), "{b}");
    assert_eq!(generic["eventId"], b["id"]);
    assert_eq!(
        generic["signature"],
        json!(format!(
            "sha256={}",
            hmac_hex(generic["rawBody"].as_str().unwrap())
        ))
    );
    let slack = got.iter().find(|r| r["hook"] == "slack").unwrap();
    assert_eq!(
        slack["body"]["blocks"][0]["text"]["text"],
        "renewal.upcoming"
    );
    assert_eq!(slack["body"]["text"], b["summary"]);
    let teams = got.iter().find(|r| r["hook"] == "teams").unwrap();
    let card = &teams["body"]["attachments"][0];
    assert_eq!(
        card["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(card["content"]["body"][0]["text"], "renewal.upcoming");

    // The mark is on that key, and only on it.
    let marks = notice_marks(&env, APP2).await;
    for (key, mark) in &marks {
        assert_eq!(mark.is_some(), *key == current, "{}: {mark:?}", shown(key));
    }

    env.clear_requests().await;
    let (second, out2) = rotate_app(&settings, APP2, false);
    assert_eq!(apigee_writes(env.writes().await), 0, "marked once");
    assert!(warnings_of(&second, "NOTIFY").is_empty(), "{second}");
    assert_eq!(
        received(&env).await.len(),
        3,
        "the second run sent another notice"
    );

    let everything = format!(
        "{}\n{dry_out}\n{out1}\n{out2}",
        Value::Array(received(&env).await)
    );
    for key in env.all_keys().await {
        assert!(!everything.contains(&key), "a full key leaked");
    }
}

/// No channel takes the notice: no mark, a `NOTIFY` warning; the next run sends it and marks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_no_channel_took_is_not_marked_and_the_next_run_sends_it() {
    let env = Env::start().await;
    let settings = key_event_settings(&env, &["renewal.upcoming"], "160");
    let current = current_of_app2(&env).await;
    env.add_fault(&json!({"service": "webhook", "match": "/hooks/", "status": 503}))
        .await;

    let (first, _) = rotate_app(&settings, APP2, false);
    let notify = warnings_of(&first, "NOTIFY");
    assert_eq!(notify.len(), 3, "one per channel: {first}");
    assert!(notify
        .iter()
        .all(|w| w["code"] == "NotificationNotDelivered"));
    assert!(received(&env).await.is_empty());
    assert!(
        notice_marks(&env, APP2)
            .await
            .iter()
            .all(|(_, m)| m.is_none()),
        "marked without a delivery"
    );

    env.clear_faults().await;
    let (second, _) = rotate_app(&settings, APP2, false);
    assert!(warnings_of(&second, "NOTIFY").is_empty(), "{second}");
    let got = arrived(&env, "renewal.upcoming").await;
    assert_eq!(got.len(), 3, "{got:#?}");
    let marked: Vec<String> = notice_marks(&env, APP2)
        .await
        .into_iter()
        .filter(|(_, m)| m.is_some())
        .map(|(k, _)| k)
        .collect();
    assert_eq!(marked, [current]);
}

/// A target whose write fails keeps the key it held; when that key expires within the days,
/// `target.expiring` names the target, its key and its failure, on every channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_left_holding_an_expiring_key_is_named() {
    let env = Env::start().await;
    // App1's current key expires in 10 days: the run renews it, and the secret that holds it
    // refuses the write.
    let settings = key_event_settings(&env, &["target.expiring"], "14");
    let state = env.state().await;
    let old: Vec<String> = state["apigee"]["apps"][APP1]["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["consumerKey"].as_str().unwrap().to_string())
        .collect();
    env.add_fault(&json!({"service": "keyVault", "method": "PUT", "match": "/secrets/healthcheck-prd-apikey", "status": 403}))
        .await;

    let (report, output) = rotate(&settings, false);
    assert!(
        report["summary"]["renewed"].as_u64().unwrap() > 0,
        "{report}"
    );
    let failed: Vec<&Value> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["target"]
                .as_str()
                .unwrap_or_default()
                .ends_with("/healthcheck-prd-apikey")
        })
        .collect();
    assert_eq!(failed.len(), 1, "{report}");
    assert!(warnings_of(&report, "NOTIFY").is_empty(), "{report}");

    let got = arrived(&env, "target.expiring").await;
    assert_eq!(got.len(), 3, "one per channel: {got:#?}");
    let generic = got.iter().find(|r| r["hook"] == "generic").unwrap();
    let b = &generic["body"];
    assert_eq!(b["app"], APP1);
    let targets = b["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 1, "{b}");
    let t = &targets[0];
    assert_eq!(
        t["target"],
        json!(format!(
            "KEY_VAULT {}",
            failed[0]["target"].as_str().unwrap()
        ))
    );
    assert!(old.iter().any(|k| t["key"] == shown(k)), "{t}");
    assert_eq!(t["state"], "previous");
    assert_eq!(t["code"], failed[0]["code"]);
    assert!((8..=10).contains(&t["daysLeft"].as_i64().unwrap()), "{t}");
    let slack = got.iter().find(|r| r["hook"] == "slack").unwrap();
    let lines = slack["body"]["blocks"].as_array().unwrap();
    assert!(lines.iter().any(|l| l["text"]["text"]
        .as_str()
        .is_some_and(|s| s.contains("healthcheck-prd-apikey holds ****"))));
    // Only that target: the others were written.
    assert!(!b["summary"].as_str().unwrap().contains("orders"), "{b}");

    let everything = format!("{}\n{output}", Value::Array(received(&env).await));
    for key in env.all_keys().await {
        assert!(!everything.contains(&key), "a full key leaked");
    }
}

/// A bad `NOTIFY_UPCOMING_DAYS` fails `validate --settings` and stops a run at its start, as a
/// bad `NOTIFY_CHANNELS` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_upcoming_days_fails_validate_and_stops_the_run() {
    let env = Env::start().await;
    let settings = key_event_settings(&env, &["renewal.upcoming"], "0");
    let expected =
        "NOTIFY_UPCOMING_DAYS: expected a whole number of days from 1 to 365 (default 7), got \"0\"";
    crate::common::assert_settings_refused(&env, &settings, expected).await;
}
