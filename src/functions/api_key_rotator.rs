//! `GET /api/ApiKeyRotator?dryRun=&app=&force=&revoke=`: one rotation run, the report as the
//! body (`revoke=immediate`, with `force` and `app`: emergency rotation, see
//! [`crate::rotation::revocation`]);
//! 200 when nothing failed, 207 when some targets did.
//!
//! A run that has not ended within [`crate::settings::HTTP_ANSWER`] (or at once, when the
//! caller sends `Prefer: respond-async`, RFC 7240; `wait=N` bounds the wait) is answered
//! `202 Accepted` with `Location: /api/ApiKeyRotator?run=<id>` and `Retry-After`; the run goes
//! on in this process ([`super::runs`]) and `GET` of that location answers 202 while it goes,
//! then the report (or the run's error) with the status the run would have had.

use super::runs::{Outcome, Polled, RUNS};
use super::{ApiError, AppState};
use crate::rotation::revocation::RevokeMode;
use crate::rotation::RunOptions;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::collections::HashMap;
use std::time::Duration;

/// Seconds a poller is asked to wait between polls.
pub const POLL_AFTER_SECONDS: u64 = 10;

pub(super) async fn handle(
    State(rotator): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let parsed = super::strict_query(query.as_deref())?;
    if let Some(id) = parsed.get("run") {
        return poll(id, &parsed);
    }
    let mut options = run_options(&parsed)?;
    options.origin = super::toolkit_app::audit_origin(&headers, query.as_deref());
    // Not `http_triggered`: the caller is answered within the HTTP budget whatever happens,
    // so the run itself may take the long deadline (the timer's), behind a 202 past the budget.
    let id = uuid::Uuid::new_v4().to_string();
    options.run_id = Some(id.clone());
    let budget = rotator.settings().deadlines.http_answer;
    let wait = prefer_async(&headers).map_or(budget, |w| w.min(budget));
    let run = async move { rotator.run(&options).await };
    match RUNS.start(&id, wait, run).await {
        Some(outcome) => Ok(answer(&outcome)),
        None => Ok(accepted(&id, time::OffsetDateTime::now_utc())),
    }
}

/// `GET ?run=<id>`: 202 while the run goes on, its answer once it ended, 404 when this
/// process knows no such run.
fn poll(id: &str, query: &HashMap<String, String>) -> Result<Response, ApiError> {
    if let Some(other) = query
        .keys()
        .find(|k| !["run", "code"].contains(&k.as_str()))
    {
        return Err(bad(format!(
            "query parameter {other} cannot be given with run: a poll only names the run"
        )));
    }
    match RUNS.poll(id) {
        Polled::Running { started } => Ok(accepted(id, started)),
        Polled::Done(outcome) => Ok(answer(&outcome)),
        Polled::Unknown => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "RunNotFound",
            format!(
                "no run {id} is known here: answers are kept {} min after a run ends, in the \
                 instance that ran it (a restart or another instance does not know it); the \
                 audit trail and KeyStatus say what it did",
                super::runs::KEEP_FINISHED.as_secs() / 60
            ),
        )),
    }
}

/// The answer of an ended run: 200 or 207 with the report, or the run's error.
fn answer(outcome: &Outcome) -> Response {
    match outcome {
        Ok(report) => {
            let status = if report.has_errors() {
                StatusCode::MULTI_STATUS
            } else {
                StatusCode::OK
            };
            (status, Json(report)).into_response()
        }
        Err(e) => e.clone().into_response(),
    }
}

/// `202 Accepted` for run `id`, going on since `started`: where to poll, and when.
fn accepted(id: &str, started: time::OffsetDateTime) -> Response {
    // Relative: the caller resolves it against the URL it called (the host's, not ours), and
    // the function key it used is not echoed (it is a secret).
    let location = format!("/api/ApiKeyRotator?run={id}");
    let body = serde_json::json!({
        "runId": id,
        "status": "Running",
        "startedAt": crate::rfc3339::format(started, crate::rfc3339::Fraction::Millis),
        "location": location,
        "message": format!(
            "the run goes on; GET {location} (with your function key) for its report"
        ),
    });
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    h.insert(header::RETRY_AFTER, HeaderValue::from(POLL_AFTER_SECONDS));
    response
}

/// `Prefer: respond-async` (RFC 7240 §4.1): how long the caller will wait for a full answer,
/// `wait=N` seconds (§4.3) or none; `None` without the preference.
fn prefer_async(headers: &HeaderMap) -> Option<Duration> {
    let mut respond_async = false;
    let mut wait = Duration::ZERO;
    for value in headers.get_all("prefer") {
        let Ok(text) = value.to_str() else { continue };
        for preference in text.split(',') {
            // A preference's own parameters (`; ...`) change nothing here.
            let preference = preference.split(';').next().unwrap_or_default();
            let (name, value) = match preference.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                None => (preference.trim(), None),
            };
            if name.eq_ignore_ascii_case("respond-async") {
                respond_async = true;
            } else if name.eq_ignore_ascii_case("wait") {
                if let Some(secs) = value.and_then(|v| v.parse::<u64>().ok()) {
                    wait = Duration::from_secs(secs);
                }
            }
        }
    }
    respond_async.then_some(wait)
}

fn bad(m: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", m)
}

/// The boolean query parameter `name` (absent: false); anything but true/false/1/0 is refused.
pub(super) fn flag(query: &HashMap<String, String>, name: &str) -> Result<bool, ApiError> {
    match query.get(name).map(|v| v.to_ascii_lowercase()).as_deref() {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") | Some("") => Ok(true),
        Some(other) => Err(bad(format!(
            "query parameter {name}: expected true or false, got \"{other}\""
        ))),
    }
}

/// The `app` query parameter, trimmed; an empty value is refused.
pub(super) fn app(query: &HashMap<String, String>) -> Result<Option<String>, ApiError> {
    let app = query.get("app").map(|a| a.trim().to_string());
    if app.as_deref() == Some("") {
        return Err(bad(
            "query parameter app: expected an apimAppName, got an empty value".into(),
        ));
    }
    Ok(app)
}

/// Reads the query; unknown parameters and non-boolean flags are rejected, not ignored.
fn run_options(query: &HashMap<String, String>) -> Result<RunOptions, ApiError> {
    let flag = |name: &str| flag(query, name);
    // `code` is the function key when passed in the query; the host has checked it already.
    if let Some(unknown) = query
        .keys()
        .find(|k| !["dryRun", "app", "force", "code", "revoke"].contains(&k.as_str()))
    {
        return Err(bad(format!(
            "unknown query parameter \"{unknown}\"; expected dryRun, app, force, revoke, or run (alone, to poll a run)"
        )));
    }
    let revoke = match query.get("revoke").map(|v| v.trim()) {
        None => RevokeMode::Settings,
        Some(v) if v.eq_ignore_ascii_case("immediate") => RevokeMode::Immediately,
        Some(other) => {
            return Err(bad(format!(
                "query parameter revoke: expected \"immediate\" (with force=true and app), got \"{other}\""
            )))
        }
    };
    Ok(RunOptions {
        dry_run: flag("dryRun")?,
        app: app(query)?,
        force: flag("force")?,
        revoke,
        ..RunOptions::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefer(values: &[&str]) -> Option<Duration> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("prefer", HeaderValue::from_str(v).unwrap());
        }
        prefer_async(&h)
    }

    #[test]
    fn the_prefer_header() {
        assert_eq!(prefer(&[]), None);
        assert_eq!(prefer(&["return=minimal"]), None);
        assert_eq!(prefer(&["respond-async"]), Some(Duration::ZERO));
        assert_eq!(
            prefer(&["Respond-Async, wait=15"]),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            prefer(&["wait=\"5\"", "respond-async"]),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            prefer(&["respond-async; x, wait=soon"]),
            Some(Duration::ZERO)
        );
    }

    /// A poll names only the run; an unknown run is a 404 that says why.
    #[test]
    fn polls() {
        let e = poll("r", &q(&[("run", "r"), ("dryRun", "true")])).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let e = poll("nope", &q(&[("run", "nope"), ("code", "k")])).unwrap_err();
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
        assert_eq!(e.code(), "RunNotFound");
    }

    #[test]
    fn accepted_says_where_and_when() {
        let r = accepted("abc", time::OffsetDateTime::UNIX_EPOCH);
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert_eq!(r.headers()[header::LOCATION], "/api/ApiKeyRotator?run=abc");
        assert_eq!(r.headers()[header::RETRY_AFTER], "10");
    }

    use crate::functions::test_query as q;

    #[test]
    fn query_flags() {
        let o = run_options(&q(&[("dryRun", "true"), ("app", "A"), ("force", "1")])).unwrap();
        assert!(o.dry_run && o.force);
        assert_eq!(o.app.as_deref(), Some("A"));
        assert!(!run_options(&q(&[])).unwrap().dry_run);
        assert!(run_options(&q(&[("code", "fnkey")])).is_ok());
        assert_eq!(run_options(&q(&[])).unwrap().revoke, RevokeMode::Settings);
        let o = run_options(&q(&[
            ("app", "A"),
            ("force", "true"),
            ("revoke", "immediate"),
        ]))
        .unwrap();
        assert_eq!(o.revoke, RevokeMode::Immediately);
    }

    #[test]
    fn bad_queries_are_rejected() {
        for bad in [
            q(&[("dryRun", "yes")]),
            q(&[("dryrun", "true")]),
            q(&[("app", " ")]),
            q(&[("revoke", "later")]),
            q(&[("revoke", "")]),
        ] {
            assert_eq!(
                run_options(&bad).unwrap_err().status(),
                StatusCode::BAD_REQUEST
            );
        }
    }
}
