//! Sending a finished run's events to its channels, at the end of `Rotator::run`: through the
//! shared HTTP client and the run's [`Call`] ([`retry::send`]: 429, 5xx and transport errors
//! retried with backoff, never past the deadline), bounded by [`MAX_DELIVERY`]. A delivery
//! never fails the run: what could not be delivered becomes a [`REPORT_TYPE`] warning naming
//! the channel's type, its setting and the count of events, never its URL (a secret).

use super::config::{Channel, ChannelKind};
use super::{
    events_of, signature, slack_body, teams_body, webhook_body, Notice, EVENT_ID_HEADER,
    REPORT_TYPE, SIGNATURE_HEADER,
};
use crate::azure::retry::{self, Call, Idempotency};
use crate::error::Error;
use crate::rotation::report::{Report, ReportEntry};
use std::time::{Duration, Instant};

/// How long notifications may take in all, after the run (within its deadline).
pub const MAX_DELIVERY: Duration = Duration::from_secs(30);

/// The code of a [`REPORT_TYPE`] warning: some events were not delivered.
pub const NOT_DELIVERED: &str = "NotificationNotDelivered";

/// Delivers `report`'s events to the channels of the settings. A dry run sends nothing.
pub async fn notify_run(
    settings: &crate::settings::Settings,
    http: Result<&reqwest::Client, Error>,
    call: &Call,
    report: &mut Report,
) {
    if report.dry_run {
        return;
    }
    // Checked at the run's start: a problem here means the settings changed under the run.
    let channels = match super::config::from_settings(settings) {
        Ok(c) if c.is_empty() => return,
        Ok(c) => c,
        Err(problems) => {
            for p in problems {
                report.warnings.push(
                    ReportEntry::new(REPORT_TYPE, "", "", format!("No notification sent: {p}"))
                        .with_code(NOT_DELIVERED),
                );
            }
            return;
        }
    };
    let events = events_of(report);
    let bound = Instant::now() + MAX_DELIVERY;
    let call = call.with_deadline(Some(call.deadline().map_or(bound, |d| d.min(bound))));
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
                    if let Err(why) = deliver(client, &call, channel, n).await {
                        failed += 1;
                        last = why;
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
