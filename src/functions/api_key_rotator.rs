//! `GET /api/ApiKeyRotator?dryRun=&app=&force=&revoke=`: one rotation run, the report as the
//! body (`revoke=immediate`, with `force` and `app`: emergency rotation, see
//! [`crate::rotation::revocation`]);
//! 200 when nothing failed, 207 when some targets did.

use super::{ApiError, AppState};
use crate::rotation::revocation::RevokeMode;
use crate::rotation::RunOptions;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::collections::HashMap;

pub(super) async fn handle(
    State(rotator): State<AppState>,
    headers: axum::http::HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let mut options = run_options(&super::strict_query(query.as_deref())?)?;
    options.origin = super::toolkit_app::audit_origin(&headers, query.as_deref());
    let report = rotator.run(&options).await?;
    let status = if report.has_errors() {
        StatusCode::MULTI_STATUS
    } else {
        StatusCode::OK
    };
    Ok((status, Json(report)).into_response())
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
            "unknown query parameter \"{unknown}\"; expected dryRun, app, force or revoke"
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
        http_triggered: true,
        revoke,
        ..RunOptions::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
