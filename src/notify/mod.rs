//! Notifications: the events of a finished run, built from its [`Report`] (as the audit trail
//! is), and their payloads for three kinds of channel: a generic webhook (JSON signed with
//! HMAC-SHA256), a Slack incoming webhook (`text` and Block Kit `blocks`) and a Microsoft Teams
//! Workflows webhook (a `message` carrying an Adaptive Card). [`config`] reads the channels.
//!
//! Everything here is pure: no request is sent. Keys appear only as the report carries them
//! (`****` and the last 4, [`crate::secret::ApiKey::redacted`]).
//!
//! Two events need more than the report, the current keys' due dates and what failed targets
//! still hold: `renewal.upcoming` and `target.expiring` are [`upcoming`]'s.

pub mod config;
pub mod deliver;
pub mod upcoming;

use crate::rotation::report::{Report, ReportEntry};
use crate::rotation::revocation;
use crate::secret::sha256_hex;
use crate::targets::TargetType;
use serde_json::{json, Map, Value};

/// The report type of a warning about notifications (a channel that could not be reached).
pub const REPORT_TYPE: &str = "NOTIFY";

/// The header of a generic webhook's signature: `sha256=` and the lower-case hex HMAC-SHA256 of
/// the exact body, keyed with the channel's secret.
pub const SIGNATURE_HEADER: &str = "X-ApiKeyRotator-Signature";

/// The header of a generic webhook's event id (the body's `id`): a receiver drops an id it has
/// already seen, so a retried delivery is processed once.
pub const EVENT_ID_HEADER: &str = "X-ApiKeyRotator-Event-Id";

/// The kinds of event a channel can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// An app's key was renewed (old → new, last 4 only; the targets updated).
    RenewalDone,
    /// The run had failures (the failing targets and their codes, what to do).
    RunFailed,
    /// A key the rotator replaced was revoked.
    RevocationDone,
    /// A revocation was blocked (a target still holds the old key, ...).
    RevocationBlocked,
    /// An app's current key falls due for renewal within `NOTIFY_UPCOMING_DAYS` days (once
    /// per key, [`upcoming`]).
    RenewalUpcoming,
    /// After a run, a target still holds a key other than the current one that expires within
    /// `NOTIFY_UPCOMING_DAYS` days ([`upcoming`]).
    TargetExpiring,
}

impl EventType {
    /// Every event type, in the order of the docs.
    pub const ALL: [EventType; 6] = [
        EventType::RenewalDone,
        EventType::RunFailed,
        EventType::RevocationDone,
        EventType::RevocationBlocked,
        EventType::RenewalUpcoming,
        EventType::TargetExpiring,
    ];

    /// The event's name in payloads and in `NOTIFY_CHANNELS`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::RenewalDone => "renewal.done",
            EventType::RunFailed => "run.failed",
            EventType::RevocationDone => "revocation.done",
            EventType::RevocationBlocked => "revocation.blocked",
            EventType::RenewalUpcoming => "renewal.upcoming",
            EventType::TargetExpiring => "target.expiring",
        }
    }

    /// The event type of a name, if it is one.
    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|e| e.as_str() == name)
    }
}

/// One event of a run, ready to be rendered for any channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// Stable for the run, the type, the app and the position: the same event rendered twice
    /// (a retry) has the same id.
    pub id: String,
    /// What happened.
    pub kind: EventType,
    /// When (the report's end time, RFC 3339).
    pub time: String,
    /// The run's id.
    pub run_id: String,
    /// The app (empty for `run.failed`, which is the run's).
    pub app: String,
    /// One line for a person.
    pub summary: String,
    /// The event's own fields (after `id`, `type`, `time`, `runId`, `app` in the JSON).
    pub details: Map<String, Value>,
}

/// The events of a finished run, in report order: `renewal.done` per renewed app,
/// `revocation.done` per revoked key, `revocation.blocked` per app with blocked revocations,
/// and one `run.failed` when the run had errors. A dry run has none: it changed nothing.
pub fn events_of(report: &Report) -> Vec<Notice> {
    if report.dry_run {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut push = |kind: EventType, app: &str, summary: String, details: Map<String, Value>| {
        let n = out.len();
        out.push(Notice {
            id: event_id(&report.run_id, kind, app, n),
            kind,
            time: report.timestamp.clone(),
            run_id: report.run_id.clone(),
            app: app.to_string(),
            summary,
            details,
        });
    };
    for e in report
        .successes
        .iter()
        .filter(|e| e.kind == "TOOLKIT" && e.api_key.is_some())
    {
        let new_key = e.api_key.clone().unwrap_or_default();
        let old_key = old_key_of(&e.message, &new_key);
        let targets: Vec<String> = report
            .successes
            .iter()
            .filter(|t| t.app_name == e.app_name && TargetType::of_report(&t.kind).is_some())
            .map(target_label)
            .collect();
        let summary = format!(
            "Key of {} renewed: {} → {}; {} updated.",
            e.app_name,
            old_key.as_deref().unwrap_or("(none)"),
            new_key,
            crate::rotation::report::plural(targets.len(), "target"),
        );
        let mut d = Map::new();
        d.insert("oldKey".into(), json!(old_key));
        d.insert("newKey".into(), json!(new_key));
        d.insert("targetsUpdated".into(), json!(targets));
        d.insert("message".into(), json!(e.message));
        push(EventType::RenewalDone, &e.app_name, summary, d);
    }
    for e in report
        .successes
        .iter()
        .filter(|e| e.kind == revocation::REPORT_TYPE && e.api_key.is_some())
    {
        let key = e.api_key.clone().unwrap_or_default();
        let mut d = Map::new();
        d.insert("key".into(), json!(key));
        d.insert("message".into(), json!(e.message));
        push(
            EventType::RevocationDone,
            &e.app_name,
            format!("Key {key} of {} revoked.", e.app_name),
            d,
        );
    }
    let blocked: Vec<&ReportEntry> = report
        .warnings
        .iter()
        .chain(report.errors.iter())
        .filter(|e| {
            e.kind == revocation::REPORT_TYPE && e.code.as_deref() == Some(revocation::BLOCKED_CODE)
        })
        .collect();
    let mut apps: Vec<&str> = blocked.iter().map(|e| e.app_name.as_str()).collect();
    apps.dedup();
    for app in apps {
        let by: Vec<Value> = blocked
            .iter()
            .filter(|e| e.app_name == app)
            .map(|e| json!({"target": e.target, "key": e.api_key, "message": e.message}))
            .collect();
        let mut d = Map::new();
        let n = by.len();
        d.insert("blockedBy".into(), Value::Array(by));
        push(
            EventType::RevocationBlocked,
            app,
            format!(
                "Revocation for {app} blocked ({}).",
                crate::rotation::report::plural(n, "reason")
            ),
            d,
        );
    }
    if !report.errors.is_empty() {
        let failures: Vec<Value> = report
            .errors
            .iter()
            .map(|e| {
                let code = e.code.clone().unwrap_or_default();
                json!({
                    "app": e.app_name,
                    "target": target_label(e),
                    "code": code,
                    "message": e.message,
                    "whatToDo": crate::rotation::report::hint(&e.kind, &code),
                })
            })
            .collect();
        let summary = format!(
            "Run {} had {}.",
            report.run_id,
            crate::rotation::report::plural(failures.len(), "failure")
        );
        let mut d = Map::new();
        d.insert("failures".into(), Value::Array(failures));
        push(EventType::RunFailed, "", summary, d);
    }
    out
}

/// `KIND target` as the audit trail names a target (the kind alone when the entry names none).
fn target_label(e: &ReportEntry) -> String {
    if e.target.is_empty() {
        e.kind.clone()
    } else {
        format!("{} {}", e.kind, e.target)
    }
}

/// The key a renewal replaced, as the toolkit's message names it (`key ****abcd expires on
/// ...`, `renewal of key ****abcd was forced`): the first redacted key in it that is not the
/// new one. `None` when the app had no usable key.
fn old_key_of(message: &str, new_key: &str) -> Option<String> {
    let mut rest = message;
    while let Some(i) = rest.find("****") {
        let tail = &rest[i + 4..];
        let n = tail
            .char_indices()
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .count()
            .min(4);
        let candidate = format!("****{}", &tail[..n]);
        if n > 0 && candidate != new_key {
            return Some(candidate);
        }
        rest = tail;
    }
    None
}

fn event_id(run_id: &str, kind: EventType, app: &str, n: usize) -> String {
    let h = sha256_hex(format!("{run_id}\n{}\n{app}\n{n}", kind.as_str()).as_bytes());
    // A UUID's layout, for receivers that store ids as UUIDs.
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The generic webhook's body: `{id, type, time, runId, app, summary, ...details}`.
pub fn webhook_body(n: &Notice) -> String {
    let mut m = Map::new();
    m.insert("id".into(), json!(n.id));
    m.insert("type".into(), json!(n.kind.as_str()));
    m.insert("time".into(), json!(n.time));
    m.insert("runId".into(), json!(n.run_id));
    m.insert("app".into(), json!(n.app));
    m.insert("summary".into(), json!(n.summary));
    for (k, v) in &n.details {
        m.insert(k.clone(), v.clone());
    }
    Value::Object(m).to_string()
}

/// The value of [`SIGNATURE_HEADER`] for `body`: `sha256=` and the hex HMAC-SHA256 keyed with
/// `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    // HMAC takes a key of any length.
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// The lines of an event's detail, for the chat channels.
fn detail_lines(n: &Notice) -> Vec<String> {
    let mut lines = Vec::new();
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    match n.kind {
        EventType::RenewalDone => {
            if let Some(Value::Array(ts)) = n.details.get("targetsUpdated") {
                lines.extend(ts.iter().map(|t| format!("Updated: {}", s(t))));
            }
        }
        EventType::RunFailed => {
            if let Some(Value::Array(fs)) = n.details.get("failures") {
                for f in fs {
                    let what = f
                        .get("whatToDo")
                        .and_then(Value::as_str)
                        .map(|w| format!(" {w}"))
                        .unwrap_or_default();
                    lines.push(format!(
                        "{} {} ({}): {}{what}",
                        s(&f["app"]),
                        s(&f["target"]),
                        s(&f["code"]),
                        s(&f["message"])
                    ));
                }
            }
        }
        EventType::RevocationBlocked => {
            if let Some(Value::Array(bs)) = n.details.get("blockedBy") {
                lines.extend(bs.iter().map(|b| s(&b["message"])));
            }
        }
        EventType::RenewalUpcoming => {
            lines.push(format!(
                "Due for renewal: {} ({} days left)",
                s(&n.details["renewalDueAt"]),
                n.details["daysLeft"]
            ));
            if let Some(e) = n.details.get("expiresAt").and_then(Value::as_str) {
                lines.push(format!("Expires: {e}"));
            }
        }
        EventType::TargetExpiring => {
            if let Some(Value::Array(ts)) = n.details.get("targets") {
                lines.extend(ts.iter().map(|t| {
                    format!(
                        "{} holds {}, which expires at {} ({} days left; {})",
                        s(&t["target"]),
                        s(&t["key"]),
                        s(&t["expiresAt"]),
                        t["daysLeft"],
                        s(&t["code"])
                    )
                }));
            }
        }
        EventType::RevocationDone => {}
    }
    lines
}

/// A Slack incoming webhook's message: `text` (the notification's fallback) and Block Kit
/// `blocks`: a `header`, a `section` with the summary, a `section` per detail line (at most
/// 45: Slack takes 50 blocks), and a `context` with the run.
pub fn slack_body(n: &Notice) -> String {
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": n.kind.as_str()}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": n.summary}}),
    ];
    blocks.extend(
        detail_lines(n)
            .into_iter()
            .take(45)
            .map(|l| json!({"type": "section", "text": {"type": "mrkdwn", "text": l}})),
    );
    blocks.push(json!({"type": "context", "elements": [
        {"type": "mrkdwn", "text": format!("run {} · {} · event {}", n.run_id, n.time, n.id)}
    ]}));
    json!({"text": n.summary, "blocks": blocks}).to_string()
}

/// A Teams Workflows webhook's message: one Adaptive Card (1.4) with the event's name, its
/// summary, a `TextBlock` per detail line and a `FactSet` of the run.
pub fn teams_body(n: &Notice) -> String {
    let mut body = vec![
        json!({"type": "TextBlock", "size": "Medium", "weight": "Bolder", "text": n.kind.as_str(), "wrap": true}),
        json!({"type": "TextBlock", "text": n.summary, "wrap": true}),
    ];
    body.extend(
        detail_lines(n)
            .into_iter()
            .map(|l| json!({"type": "TextBlock", "text": l, "wrap": true})),
    );
    body.push(json!({"type": "FactSet", "facts": [
        {"title": "Run", "value": n.run_id},
        {"title": "App", "value": n.app},
        {"title": "Time", "value": n.time},
        {"title": "Event", "value": n.id},
    ]}));
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
            }
        }]
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::ApiKey;

    fn report() -> Report {
        let mut r = Report::new(false);
        r.run_id = "run-1".into();
        r.timestamp = "2026-12-01T10:00:00.000Z".into();
        let new = ApiKey::new("new-key-0000000NEW1".to_string());
        r.successes.push(
            ReportEntry::new(
                "TOOLKIT",
                "A",
                "",
                "key ****OLD9 expires on 2026-12-05, inside the 10-day renewal window",
            )
            .with_key(&new),
        );
        r.successes
            .push(ReportEntry::new("KEY_VAULT", "A", "kv/s1", "Updated").with_key(&new));
        r.successes
            .push(ReportEntry::new("KEY_VAULT", "B", "kv/s2", "Updated").with_key(&new));
        let old = ApiKey::new("old-key-00000000OLD9".to_string());
        r.successes.push(
            ReportEntry::new(revocation::REPORT_TYPE, "C", "", "Revoked ****OLD9").with_key(&old),
        );
        r.warnings.push(
            ReportEntry::new(
                revocation::REPORT_TYPE,
                "D",
                "KEY_VAULT kv/x",
                "Blocked by KEY_VAULT kv/x: it holds the old key.",
            )
            .with_key(&old)
            .with_code(revocation::BLOCKED_CODE),
        );
        r.errors
            .push(ReportEntry::new("KEY_VAULT", "A", "kv/s3", "Forbidden").with_code("Forbidden"));
        r
    }

    #[test]
    fn events_of_a_run() {
        let events = events_of(&report());
        let kinds: Vec<_> = events.iter().map(|e| (e.kind, e.app.as_str())).collect();
        assert_eq!(
            kinds,
            [
                (EventType::RenewalDone, "A"),
                (EventType::RevocationDone, "C"),
                (EventType::RevocationBlocked, "D"),
                (EventType::RunFailed, ""),
            ]
        );
        let r = &events[0];
        assert_eq!(r.details["oldKey"], "****OLD9");
        assert_eq!(r.details["newKey"], "****NEW1");
        assert_eq!(r.details["targetsUpdated"], json!(["KEY_VAULT kv/s1"]));
        assert_eq!(
            r.summary,
            "Key of A renewed: ****OLD9 → ****NEW1; 1 target updated."
        );
        let f = &events[3].details["failures"][0];
        assert_eq!(
            (&f["app"], &f["target"], &f["code"]),
            (&json!("A"), &json!("KEY_VAULT kv/s3"), &json!("Forbidden"))
        );
        // Ids are stable (a retry renders the same) and distinct.
        assert_eq!(events_of(&report())[0].id, r.id);
        assert_ne!(events[1].id, r.id);
    }

    #[test]
    fn a_dry_run_has_no_events() {
        let mut r = report();
        r.dry_run = true;
        assert!(events_of(&r).is_empty());
    }

    #[test]
    fn a_clean_run_has_no_failure_event() {
        let mut r = report();
        r.errors.clear();
        assert!(events_of(&r).iter().all(|e| e.kind != EventType::RunFailed));
    }

    #[test]
    fn old_key_from_the_toolkit_message() {
        assert_eq!(
            old_key_of("renewal of key ****ab12 was forced", "****zz99"),
            Some("****ab12".into())
        );
        assert_eq!(
            old_key_of("the app has no complete, unexpired key", "****zz99"),
            None
        );
        assert_eq!(
            old_key_of("key ****zz99 and ****ab12", "****zz99"),
            Some("****ab12".into())
        );
    }

    #[test]
    fn event_names_round_trip() {
        for e in EventType::ALL {
            assert_eq!(EventType::parse(e.as_str()), Some(e));
        }
        assert_eq!(
            EventType::parse("renewal.upcoming"),
            Some(EventType::RenewalUpcoming)
        );
        assert_eq!(
            EventType::parse("target.expiring"),
            Some(EventType::TargetExpiring)
        );
        assert_eq!(EventType::parse("renewal.soon"), None);
    }

    #[test]
    fn the_signature_is_the_hmac_of_the_exact_body() {
        use hmac::{Hmac, Mac};
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let n = &events_of(&report())[0];
        let body = webhook_body(n);
        let sig = signature(b"s3cret", body.as_bytes());
        let hex = sig.strip_prefix("sha256=").unwrap();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(body.as_bytes());
        mac.verify_slice(&bytes).unwrap();
        // Another byte, another signature.
        assert_ne!(signature(b"s3cret", format!("{body} ").as_bytes()), sig);
    }

    #[test]
    fn the_webhook_body() {
        let n = &events_of(&report())[0];
        let v: Value = serde_json::from_str(&webhook_body(n)).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "id",
                "type",
                "time",
                "runId",
                "app",
                "summary",
                "oldKey",
                "newKey",
                "targetsUpdated",
                "message"
            ]
        );
        assert_eq!(v["type"], "renewal.done");
        assert_eq!(v["id"], json!(n.id));
    }

    #[test]
    fn the_webhook_bodies_of_the_two_key_events() {
        let all = upcoming::tests::sample_notices();
        let up: Value = serde_json::from_str(&webhook_body(&all[0])).unwrap();
        let keys: Vec<&str> = up.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "id",
                "type",
                "time",
                "runId",
                "app",
                "summary",
                "key",
                "renewalDueAt",
                "expiresAt",
                "daysLeft"
            ]
        );
        assert_eq!(up["type"], "renewal.upcoming");
        let exp: Value = serde_json::from_str(&webhook_body(&all[1])).unwrap();
        assert_eq!(exp["type"], "target.expiring");
        let t = &exp["targets"][0];
        let fields: Vec<&str> = t.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            fields,
            ["target", "key", "state", "expiresAt", "daysLeft", "code"]
        );
        // The chat channels name the target and the key's last 4 in a detail line.
        let slack: Value = serde_json::from_str(&slack_body(&all[1])).unwrap();
        assert!(slack["blocks"][2]["text"]["text"]
            .as_str()
            .unwrap()
            .starts_with("KEY_VAULT kv/old holds ****0001"));
        let teams: Value = serde_json::from_str(&teams_body(&all[0])).unwrap();
        let body = &teams["attachments"][0]["content"]["body"];
        assert!(body[2]["text"]
            .as_str()
            .unwrap()
            .starts_with("Due for renewal: 2026-12-06"));
    }

    /// The same shape: every object key of `documented` is in `ours` with a value of the same
    /// JSON type (arrays: every element of ours has the first documented element's shape, when
    /// both share a `type`).
    pub(crate) fn same_shape(documented: &Value, ours: &Value, path: &str) {
        match (documented, ours) {
            (Value::Object(d), Value::Object(o)) => {
                for (k, dv) in d {
                    // `$schema` and `contentUrl` are optional in the documented examples.
                    if k == "$schema" || k == "contentUrl" {
                        continue;
                    }
                    let ov = o
                        .get(k)
                        .unwrap_or_else(|| panic!("{path}.{k} missing in {ours}"));
                    // A block of another type has other fields.
                    if k != "type" || dv == ov || !path.contains('[') {
                        same_shape(dv, ov, &format!("{path}.{k}"));
                    }
                }
            }
            (Value::Array(d), Value::Array(o)) => {
                assert!(!o.is_empty(), "{path} is empty");
                for (i, ov) in o.iter().enumerate() {
                    if let Some(dv) = d.iter().find(|dv| dv.get("type") == ov.get("type")) {
                        same_shape(dv, ov, &format!("{path}[{i}]"));
                    }
                }
            }
            (Value::String(_), Value::String(_))
            | (Value::Number(_), Value::Number(_))
            | (Value::Bool(_), Value::Bool(_))
            | (Value::Null, Value::Null) => {}
            (d, o) => panic!("{path}: documented {d}, ours {o}"),
        }
    }

    fn fixture(name: &str) -> Value {
        let path = format!(
            "{}/tests/fixtures/notify/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    /// The report's events and the two of [`upcoming`].
    fn all_events() -> Vec<Notice> {
        let mut all = events_of(&report());
        all.extend(upcoming::tests::sample_notices());
        all
    }

    #[test]
    fn slack_messages_have_the_documented_shape() {
        let documented = fixture("slack-incoming-webhook.json");
        for n in all_events() {
            let ours: Value = serde_json::from_str(&slack_body(&n)).unwrap();
            same_shape(&documented, &ours, "$");
            assert_eq!(ours["text"], json!(n.summary));
            let types: Vec<&str> = ours["blocks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["type"].as_str().unwrap())
                .collect();
            assert_eq!(types[..2], ["header", "section"]);
            assert_eq!(types.last(), Some(&"context"));
        }
    }

    #[test]
    fn teams_messages_have_the_documented_shape() {
        let documented = fixture("teams-workflows-adaptive-card.json");
        for n in all_events() {
            let ours: Value = serde_json::from_str(&teams_body(&n)).unwrap();
            same_shape(&documented, &ours, "$");
            let card = &ours["attachments"][0]["content"];
            assert_eq!(card["type"], "AdaptiveCard");
            assert_eq!(card["version"], "1.4");
            assert_eq!(
                ours["attachments"][0]["contentType"],
                "application/vnd.microsoft.card.adaptive"
            );
        }
    }

    #[test]
    fn no_full_key_in_any_payload() {
        for n in all_events() {
            for body in [webhook_body(&n), slack_body(&n), teams_body(&n)] {
                for k in [
                    "new-key-0000000NEW1",
                    "old-key-00000000OLD9",
                    "0000000NEW1",
                    "PREVIOUSPREVIOUSPREVIOUS0001",
                    "CURRENTCURRENTCURRENTCUR0002",
                    "PREVIOUS0001",
                    "CURRENTCUR0002",
                ] {
                    assert!(!body.contains(k), "{body}");
                }
            }
        }
    }
}
