//! Sending a finished run's events to its channels, at the end of `Rotator::run`: through the
//! shared HTTP client and the run's [`Call`] ([`retry::send`]: 429, 5xx and transport errors
//! retried with backoff, never past the deadline), bounded by [`MAX_DELIVERY`]. A delivery
//! never fails the run: what could not be delivered becomes a [`REPORT_TYPE`] warning naming
//! the channel's type, its setting and the count of events, never its URL (a secret).

use super::config::{Channel, ChannelKind};
use super::upcoming::{self, Seen};
use super::{
    events_of, signature, slack_body, teams_body, webhook_body, EventType, Notice, EVENT_ID_HEADER,
    REPORT_TYPE, SIGNATURE_HEADER,
};
use crate::azure::retry::{self, Call, Idempotency};
use crate::error::Error;
use crate::rotation::report::{Report, ReportEntry};
use crate::toolkit::KeySource;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// How long notifications may take in all, after the run (within its deadline).
pub const MAX_DELIVERY: Duration = Duration::from_secs(30);

/// The code of a [`REPORT_TYPE`] warning: some events were not delivered.
pub const NOT_DELIVERED: &str = "NotificationNotDelivered";

/// The code of a [`REPORT_TYPE`] warning: a `renewal.upcoming` notice was delivered but its
/// mark could not be set on the key (the next run sends it again).
pub const NOT_MARKED: &str = "NoticeNotMarked";

/// Delivers `report`'s events to the channels of the settings, with `renewal.upcoming` and
/// `target.expiring` read through `keys` (from what the run `seen`) when a channel wants them;
/// a `renewal.upcoming` notice accepted by at least one channel is marked on its key, so it is
/// not sent again. A dry run sends and marks nothing: it reads the keys a real run would and
/// says in the report what it would send.
pub async fn notify_run(
    settings: &crate::settings::Settings,
    http: Result<&reqwest::Client, Error>,
    keys: Option<&dyn KeySource>,
    seen: Option<&Seen>,
    call: &Call,
    report: &mut Report,
) {
    // Checked at the run's start: a problem here means the settings changed under the run.
    let channels = match super::config::from_settings(settings) {
        Ok(c) if c.is_empty() => return,
        Ok(c) => c,
        Err(problems) => {
            if !report.dry_run {
                for p in problems {
                    report.warnings.push(
                        ReportEntry::new(REPORT_TYPE, "", "", format!("No notification sent: {p}"))
                            .with_code(NOT_DELIVERED),
                    );
                }
            }
            return;
        }
    };
    let bound = Instant::now() + MAX_DELIVERY;
    let call = call.with_deadline(Some(call.deadline().map_or(bound, |d| d.min(bound))));
    let wants = |e: EventType| channels.iter().any(|c| c.events.contains(&e));
    let wanted = (
        wants(EventType::RenewalUpcoming),
        wants(EventType::TargetExpiring),
    );
    let mut gathered = upcoming::Gathered::default();
    if wanted.0 || wanted.1 {
        let days = upcoming::upcoming_days(settings).unwrap_or(upcoming::DEFAULT_UPCOMING_DAYS);
        let none = Seen::default();
        match keys {
            Some(keys) => {
                let seen = seen.unwrap_or(&none);
                gathered = upcoming::gather(&call, keys, report, seen, wanted, days).await;
            }
            None => gathered.warnings.push(
                ReportEntry::new(
                    REPORT_TYPE,
                    "",
                    "",
                    "No renewal.upcoming or target.expiring notification: the toolkit is unavailable",
                )
                .with_code(NOT_DELIVERED),
            ),
        }
    }
    // One warning for a key source that cannot list keys (a remote ToolkitApp), not one per app.
    let remote = crate::toolkit::NEEDS_IN_PROCESS_TOOLKIT;
    if gathered
        .warnings
        .iter()
        .any(|w| w.code.as_deref() == Some(remote))
    {
        gathered
            .warnings
            .retain(|w| w.code.as_deref() != Some(remote));
        gathered.warnings.push(
            ReportEntry::new(
                REPORT_TYPE,
                "",
                "",
                format!(
                    "No renewal.upcoming or target.expiring notification: they read the apps' keys, which needs the in-process toolkit, and {} is set",
                    crate::settings::TOOLKIT_APP_URL
                ),
            )
            .with_code(remote),
        );
    }
    report.warnings.append(&mut gathered.warnings);
    if report.dry_run {
        for n in gathered
            .upcoming
            .iter()
            .map(|u| &u.notice)
            .chain(&gathered.events)
        {
            let to: Vec<&str> = channels
                .iter()
                .filter(|c| c.events.contains(&n.kind))
                .map(|c| c.url_setting.as_str())
                .collect();
            report.successes.push(ReportEntry::new(
                REPORT_TYPE,
                &n.app,
                "",
                format!(
                    "Would send {} to {} ({}): {}",
                    n.kind.as_str(),
                    crate::rotation::report::plural(to.len(), "channel"),
                    to.join(", "),
                    n.summary
                ),
            ));
        }
        return;
    }
    let mut events = events_of(report);
    events.extend(gathered.upcoming.iter().map(|u| u.notice.clone()));
    events.append(&mut gathered.events);
    let mut accepted: HashSet<String> = HashSet::new();
    for channel in &channels {
        let mine: Vec<&Notice> = events
            .iter()
            .filter(|e| channel.events.contains(&e.kind))
            .collect();
        if mine.is_empty() {
            continue;
        }
        let failure = match &http {
            Ok(client) => {
                let mut failed = 0;
                let mut last = String::new();
                for n in &mine {
                    match deliver(client, &call, channel, n).await {
                        Ok(()) => {
                            accepted.insert(n.id.clone());
                        }
                        Err(why) => {
                            failed += 1;
                            last = why;
                        }
                    }
                }
                (failed > 0).then_some((failed, last))
            }
            Err(e) => Some((mine.len(), e.to_string())),
        };
        if let Some((failed, why)) = failure {
            tracing::warn!(
                channel = channel.kind.as_str(),
                setting = %channel.url_setting,
                events = failed,
                "notifications not delivered: {why}"
            );
            report.warnings.push(
                ReportEntry::new(
                    REPORT_TYPE,
                    "",
                    channel.kind.as_str(),
                    format!(
                        "{failed} of {} notification events not delivered to the {} channel ({}): {why}",
                        mine.len(),
                        channel.kind.as_str(),
                        channel.url_setting
                    ),
                )
                .with_code(NOT_DELIVERED),
            );
        }
    }
    // Marked only once delivered somewhere: a notice no channel took is sent by the next run.
    if let Some(keys) = keys {
        let now = time::OffsetDateTime::now_utc();
        for u in gathered
            .upcoming
            .iter()
            .filter(|u| accepted.contains(&u.notice.id))
        {
            if let Err(e) = keys.mark_noticed(&call, &u.notice.app, &u.key, now).await {
                tracing::warn!(app = %u.notice.app, key = %u.key, code = e.code(), "notice delivered but not marked: {e}");
                report.warnings.push(
                    ReportEntry::new(
                        REPORT_TYPE,
                        &u.notice.app,
                        "",
                        format!(
                            "The renewal.upcoming notice of key {} was delivered but could not be marked on the key, so the next run sends it again (same event id): {e}",
                            u.key
                        ),
                    )
                    .with_key(&u.key)
                    .with_code(NOT_MARKED),
                );
            }
        }
    }
}

/// Sends one event to one channel; why not, in words that carry no URL.
async fn deliver(
    client: &reqwest::Client,
    call: &Call,
    channel: &Channel,
    n: &Notice,
) -> Result<(), String> {
    let body = match channel.kind {
        ChannelKind::Webhook => webhook_body(n),
        ChannelKind::Slack => slack_body(n),
        ChannelKind::Teams => teams_body(n),
    };
    let url = channel.url.expose();
    // The event id makes a repeated webhook delivery harmless; a chat message posted twice is
    // better than one lost.
    let response = retry::send(
        call,
        "notification channel",
        Idempotency::Idempotent,
        || {
            let mut request = client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            if channel.kind == ChannelKind::Webhook {
                request = request.header(EVENT_ID_HEADER, &n.id);
                if let Some(secret) = &channel.secret {
                    request = request.header(
                        SIGNATURE_HEADER,
                        signature(secret.expose().as_bytes(), body.as_bytes()),
                    );
                }
            }
            std::future::ready(Ok(request))
        },
    )
    .await
    .map_err(|e| format!("{} ({e})", e.code()))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", status.as_u16()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::retry::RetryPolicy;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    /// A key source that hands out keys only (a remote ToolkitApp): every default.
    struct Remote;

    #[async_trait::async_trait]
    impl KeySource for Remote {
        async fn current_key(
            &self,
            _: &Call,
            _: &str,
            _: crate::toolkit::KeyRequest,
        ) -> crate::error::Result<crate::toolkit::KeyGrant> {
            unreachable!("the notifications never ask for a grant")
        }
    }

    /// With a key source that cannot list keys, the two key events are one `NOTIFY` warning
    /// for the run (not one per app), and nothing is sent for them.
    #[tokio::test]
    async fn a_remote_toolkit_is_one_warning() {
        let settings = crate::settings::Settings::from_map(BTreeMap::from([
            (
                "NOTIFY_CHANNELS".to_string(),
                r#"[{"type":"slack","urlSetting":"NOTIFY_URL_X","events":["renewal.upcoming","target.expiring"]}]"#
                    .to_string(),
            ),
            (
                "NOTIFY_URL_X".to_string(),
                "http://127.0.0.1:9/hook".to_string(),
            ),
        ]));
        let mut report = Report::new(false);
        for app in ["A", "B"] {
            report.unchanged.push(ReportEntry::new(
                "KEY_VAULT",
                app,
                "kv/s",
                "No update needed",
            ));
        }
        let call = Call::new(Arc::new(RetryPolicy::default()), None);
        let no_http = Err(Error::config("no client in this test"));
        notify_run(&settings, no_http, Some(&Remote), None, &call, &mut report).await;
        let codes: Vec<_> = report
            .warnings
            .iter()
            .map(|w| (w.kind.as_str(), w.code.as_deref()))
            .collect();
        assert_eq!(codes, [(REPORT_TYPE, Some("NeedsInProcessToolkit"))]);
        assert!(report.warnings[0].message.contains("TOOLKIT_APP_URL"));
    }
}
