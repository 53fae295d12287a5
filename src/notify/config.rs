//! The notification channels: the setting [`NOTIFY_CHANNELS`], a JSON array of
//! `{"type": "slack"|"teams"|"webhook", "urlSetting": "NOTIFY_URL_<NAME>",
//! "secretSetting": "NOTIFY_SECRET_<NAME>" (webhook only), "events": [...]}`.
//!
//! The URLs and secrets are secrets themselves (a Slack or Teams webhook URL is its own
//! credential), so the setting names other app settings rather than carrying them, and only
//! settings named [`URL_PREFIX`]`*` / [`SECRET_PREFIX`]`*` are accepted: no setting of the
//! rotator or the platform can be sent anywhere. Strict: unknown fields, unknown events, missing
//! settings and non-https URLs (http only to loopback) are errors naming the setting and the
//! JSON path; no error quotes a URL or a secret.

use super::EventType;
use crate::secret::Secret;
use serde_json::Value;

/// The setting that lists the channels.
pub const NOTIFY_CHANNELS: &str = "NOTIFY_CHANNELS";

/// What the name of a setting holding a channel's URL starts with.
pub const URL_PREFIX: &str = "NOTIFY_URL_";

/// What the name of a setting holding a webhook's signing secret starts with.
pub const SECRET_PREFIX: &str = "NOTIFY_SECRET_";

/// A channel's kind: its payload format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    /// A Slack incoming webhook.
    Slack,
    /// A Microsoft Teams Workflows webhook (Adaptive Card).
    Teams,
    /// A generic webhook: JSON signed with HMAC-SHA256.
    Webhook,
}

impl ChannelKind {
    /// `slack`, `teams` or `webhook`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Slack => "slack",
            ChannelKind::Teams => "teams",
            ChannelKind::Webhook => "webhook",
        }
    }
}

/// One channel, its URL and secret read from the settings it names.
#[derive(Debug, Clone)]
pub struct Channel {
    /// The payload format.
    pub kind: ChannelKind,
    /// The setting the URL came from (what a message may name; never the URL).
    pub url_setting: String,
    /// The URL (a secret).
    pub url: Secret,
    /// The signing secret (webhook only).
    pub secret: Option<Secret>,
    /// The events it gets.
    pub events: Vec<EventType>,
}

/// The channels of `text` (the value of [`NOTIFY_CHANNELS`]), reading the settings they name
/// with `setting`; every problem found, each with its JSON path, in document order.
pub fn parse(
    text: &str,
    setting: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Channel>, Vec<String>> {
    let at = |path: &str, what: String| format!("{NOTIFY_CHANNELS}{path}: {what}");
    let value = crate::json::from_str(text)
        .map_err(|e| vec![format!("{NOTIFY_CHANNELS}: not valid JSON ({e})")])?;
    let Value::Array(items) = value else {
        return Err(vec![at("", "expected a JSON array of channels".into())]);
    };
    let mut problems = Vec::new();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("[{i}]");
        let Value::Object(o) = item else {
            problems.push(at(
                &path,
                "expected an object {type, urlSetting, events}".into(),
            ));
            continue;
        };
        let mut ok = true;
        let mut bad = |p: String, what: String| {
            problems.push(at(&p, what));
            ok = false;
        };
        for k in o.keys() {
            if !["type", "urlSetting", "secretSetting", "events"].contains(&k.as_str()) {
                bad(
                    format!("{path}.{k}"),
                    "unknown field (expected type, urlSetting, secretSetting, events)".into(),
                );
            }
        }
        let kind = match o.get("type").and_then(Value::as_str) {
            Some("slack") => Some(ChannelKind::Slack),
            Some("teams") => Some(ChannelKind::Teams),
            Some("webhook") => Some(ChannelKind::Webhook),
            _ => {
                bad(
                    format!("{path}.type"),
                    "expected \"slack\", \"teams\" or \"webhook\"".into(),
                );
                None
            }
        };
        let named = |field: &str,
                     prefix: &str,
                     bad: &mut dyn FnMut(String, String)|
         -> Option<Secret> {
            let p = format!("{path}.{field}");
            let Some(name) = o.get(field).and_then(Value::as_str) else {
                bad(
                    p,
                    format!("expected the name of an app setting {prefix}<NAME>"),
                );
                return None;
            };
            if !name.starts_with(prefix) || name.len() == prefix.len() {
                bad(
                    p,
                    format!("\"{name}\" cannot be used: only app settings named {prefix}<NAME>"),
                );
                return None;
            }
            match setting(name).filter(|v| !v.trim().is_empty()) {
                Some(v) => Some(Secret::new(v)),
                None => {
                    bad(p, format!("app setting {name} is not set"));
                    None
                }
            }
        };
        let url = named("urlSetting", URL_PREFIX, &mut bad);
        if let Some(u) = &url {
            if let Err(why) = check_url(u.expose()) {
                let name = o["urlSetting"].as_str().unwrap_or_default();
                bad(
                    format!("{path}.urlSetting"),
                    format!("app setting {name}: {why}"),
                );
            }
        }
        let secret = match (kind, o.contains_key("secretSetting")) {
            (Some(ChannelKind::Webhook), _) => named("secretSetting", SECRET_PREFIX, &mut bad),
            (Some(_), true) => {
                bad(
                    format!("{path}.secretSetting"),
                    "only a webhook channel is signed: remove it".into(),
                );
                None
            }
            _ => None,
        };
        let mut events = Vec::new();
        match o.get("events") {
            Some(Value::Array(es)) if !es.is_empty() => {
                for (j, e) in es.iter().enumerate() {
                    match e.as_str().and_then(EventType::parse) {
                        Some(t) if !events.contains(&t) => events.push(t),
                        Some(_) => bad(format!("{path}.events[{j}]"), "listed twice".into()),
                        None => bad(
                            format!("{path}.events[{j}]"),
                            format!(
                                "unknown event (expected one of {})",
                                EventType::ALL.map(EventType::as_str).join(", ")
                            ),
                        ),
                    }
                }
            }
            _ => bad(
                format!("{path}.events"),
                "expected a non-empty array of event names".into(),
            ),
        }
        if let (true, Some(kind), Some(url)) = (ok, kind, url) {
            out.push(Channel {
                kind,
                url_setting: o["urlSetting"].as_str().unwrap_or_default().to_string(),
                url,
                secret,
                events,
            });
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// The channels [`NOTIFY_CHANNELS`] lists (none when it is not set), or its problems (and a
/// bad [`super::upcoming::UPCOMING_DAYS`]) as setting errors: what a run checks at its start
/// and `validate --settings` shows.
pub fn from_settings(
    settings: &crate::settings::Settings,
) -> Result<Vec<Channel>, Vec<crate::settings::SettingError>> {
    let days = super::upcoming::upcoming_days(settings);
    let Some(text) = settings.get(NOTIFY_CHANNELS) else {
        return days.map(|_| Vec::new()).map_err(|e| vec![e]);
    };
    let channels =
        parse(text, &|name| settings.get(name).map(str::to_string)).map_err(|problems| {
            problems
                .into_iter()
                .map(|p| crate::settings::SettingError {
                    setting: NOTIFY_CHANNELS.to_string(),
                    message: p
                        .strip_prefix(NOTIFY_CHANNELS)
                        .map(|m| m.trim_start_matches(": ").to_string())
                        .unwrap_or(p),
                })
                .collect::<Vec<_>>()
        });
    match (channels, days) {
        (Ok(c), Ok(_)) => Ok(c),
        (Ok(_), Err(e)) => Err(vec![e]),
        (Err(p), Ok(_)) => Err(p),
        (Err(mut p), Err(e)) => {
            p.push(e);
            Err(p)
        }
    }
}

/// Why a channel URL is refused (never quoting it): not a URL, or not https (http only to a
/// loopback host, for local receivers and tests).
fn check_url(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|_| "not a URL".to_string())?;
    match url.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if loopback {
                Ok(())
            } else {
                Err("expected an https URL (http only to loopback)".into())
            }
        }
        _ => Err("expected an https URL".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(name: &str) -> Option<String> {
        match name {
            "NOTIFY_URL_SLACK" => Some("https://hooks.slack.example/services/T/B/XXXX".into()),
            "NOTIFY_URL_LOCAL" => Some("http://127.0.0.1:8080/hook".into()),
            "NOTIFY_URL_PLAIN" => Some("http://hooks.example/x?token=SECRETTOKEN".into()),
            "NOTIFY_SECRET_HOOK" => Some("s3cret".into()),
            "COMPANYDETAILS" => Some("sealed".into()),
            _ => None,
        }
    }

    #[test]
    fn channels_are_read_with_their_settings() {
        let text = r#"[
            {"type":"slack","urlSetting":"NOTIFY_URL_SLACK","events":["renewal.done","run.failed"]},
            {"type":"webhook","urlSetting":"NOTIFY_URL_LOCAL","secretSetting":"NOTIFY_SECRET_HOOK","events":["revocation.blocked"]}
        ]"#;
        let cs = parse(text, &settings).unwrap();
        assert_eq!(cs.len(), 2);
        assert_eq!(cs[0].kind, ChannelKind::Slack);
        assert_eq!(cs[0].events, [EventType::RenewalDone, EventType::RunFailed]);
        assert!(cs[0].secret.is_none());
        assert_eq!(cs[1].kind, ChannelKind::Webhook);
        assert_eq!(cs[1].secret.as_ref().unwrap().expose(), "s3cret");
        assert_eq!(cs[1].url.expose(), "http://127.0.0.1:8080/hook");
    }

    /// One tweak, one problem: each with its path, none quoting a URL or a secret.
    #[test]
    fn one_tweak_one_problem() {
        let base = r#"{"type":"webhook","urlSetting":"NOTIFY_URL_LOCAL","secretSetting":"NOTIFY_SECRET_HOOK","events":["run.failed"]}"#;
        let cases: &[(&str, &str, &str)] = &[
            ("\"type\":\"webhook\"", "\"type\":\"email\"", "NOTIFY_CHANNELS[0].type: expected \"slack\", \"teams\" or \"webhook\""),
            ("\"events\":[\"run.failed\"]", "\"events\":[\"run.failed\"],\"colour\":1", "NOTIFY_CHANNELS[0].colour: unknown field"),
            ("run.failed", "renewal.soon", "NOTIFY_CHANNELS[0].events[0]: unknown event (expected one of renewal.done, run.failed, revocation.done, revocation.blocked, renewal.upcoming, target.expiring)"),
            ("\"events\":[\"run.failed\"]", "\"events\":[]", "NOTIFY_CHANNELS[0].events: expected a non-empty array"),
            ("NOTIFY_URL_LOCAL", "NOTIFY_URL_MISSING", "NOTIFY_CHANNELS[0].urlSetting: app setting NOTIFY_URL_MISSING is not set"),
            ("NOTIFY_URL_LOCAL", "COMPANYDETAILS", "NOTIFY_CHANNELS[0].urlSetting: \"COMPANYDETAILS\" cannot be used: only app settings named NOTIFY_URL_<NAME>"),
            ("NOTIFY_URL_LOCAL", "NOTIFY_URL_PLAIN", "NOTIFY_CHANNELS[0].urlSetting: app setting NOTIFY_URL_PLAIN: expected an https URL (http only to loopback)"),
            ("NOTIFY_SECRET_HOOK", "NOTIFY_SECRET_GONE", "NOTIFY_CHANNELS[0].secretSetting: app setting NOTIFY_SECRET_GONE is not set"),
            ("\"type\":\"webhook\"", "\"type\":\"slack\"", "NOTIFY_CHANNELS[0].secretSetting: only a webhook channel is signed"),
        ];
        assert!(parse(&format!("[{base}]"), &settings).is_ok());
        for (from, to, expected) in cases {
            let text = format!("[{}]", base.replacen(from, to, 1));
            let problems = parse(&text, &settings).unwrap_err();
            assert_eq!(problems.len(), 1, "{text}: {problems:?}");
            assert!(problems[0].starts_with(expected), "{text}: {problems:?}");
            for secret in ["SECRETTOKEN", "s3cret", "127.0.0.1", "sealed"] {
                assert!(!problems[0].contains(secret), "{problems:?}");
            }
        }
    }

    #[test]
    fn not_an_array_and_duplicate_keys() {
        assert_eq!(
            parse("{}", &settings).unwrap_err(),
            ["NOTIFY_CHANNELS: expected a JSON array of channels"]
        );
        let dup = r#"[{"type":"slack","type":"teams","urlSetting":"NOTIFY_URL_SLACK","events":["run.failed"]}]"#;
        assert!(
            parse(dup, &settings).unwrap_err()[0].starts_with("NOTIFY_CHANNELS: not valid JSON")
        );
    }
}
