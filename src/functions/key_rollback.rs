//! `POST /api/KeyRollback?app=NAME[&dryRun=true]`: rolls one app back to the key its current
//! key replaced and redistributes it ([`crate::rotation::rollback`]); the run's report is the
//! body: 200 when nothing failed, 207 when some targets did, 409 when the app cannot be rolled
//! back (no still-valid previous key), 502 when the API manager failed during the step (the
//! report's one `ROLLBACK` error says why; calling again finishes it).

use super::api_key_rotator::{app, flag};
use super::{ApiError, AppState};
use crate::rotation::rollback::ROLLBACK;
use crate::rotation::RunOptions;
use crate::toolkit::NO_PREVIOUS_KEY_CODE;
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
    let mut options = rollback_options(&super::strict_query(query.as_deref())?)?;
    options.origin = super::toolkit_app::audit_origin(&headers, query.as_deref());
    let report = rotator.run(&options).await?;
    let step_failed = report.errors.iter().find(|e| e.kind == ROLLBACK);
    let status = if let Some(e) = step_failed {
        if e.code.as_deref() == Some(NO_PREVIOUS_KEY_CODE) {
            StatusCode::CONFLICT
        } else {
            StatusCode::BAD_GATEWAY
        }
    } else if report.has_errors() {
        StatusCode::MULTI_STATUS
    } else {
        StatusCode::OK
    };
    Ok((status, Json(report)).into_response())
}

/// Reads the query: `app` (required), `dryRun`, and `code` (the function key, checked by the
/// host); anything else is refused, not ignored.
fn rollback_options(query: &HashMap<String, String>) -> Result<RunOptions, ApiError> {
    let bad = |m: &str| ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", m.to_string());
    if let Some(unknown) = query
        .keys()
        .find(|k| !["app", "dryRun", "code"].contains(&k.as_str()))
    {
        return Err(bad(&format!(
            "unknown query parameter \"{unknown}\"; expected app or dryRun"
        )));
    }
    let app = app(query)?.ok_or_else(|| {
        bad("query parameter app: missing; expected the apimAppName to roll back")
    })?;
    Ok(RunOptions {
        dry_run: flag(query, "dryRun")?,
        app: Some(app),
        rollback: true,
        http_triggered: true,
        ..RunOptions::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::functions::test_query as q;

    #[test]
    fn the_query_names_one_app() {
        let o = rollback_options(&q(&[("app", " A "), ("dryRun", "true"), ("code", "k")])).unwrap();
        assert_eq!(o.app.as_deref(), Some("A"));
        assert!(o.rollback && o.dry_run && !o.force);
        for bad in [
            q(&[]),
            q(&[("app", " ")]),
            q(&[("app", "A"), ("force", "true")]),
            q(&[("app", "A"), ("dryRun", "yes")]),
        ] {
            assert_eq!(
                rollback_options(&bad).unwrap_err().status(),
                StatusCode::BAD_REQUEST
            );
        }
    }
}
