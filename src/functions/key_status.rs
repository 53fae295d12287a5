//! `GET /api/KeyStatus?app=`: every mapped app's keys and which key each target holds, read
//! only ([`crate::rotation::status`]); the answer is the body, 200 whatever the drift (drift is
//! a finding of the answer, not a failure of the call), 404 `AppNotFound` for an `app` not in
//! the mapping, the usual errors when it could not start.

use super::{ApiError, AppState};
use crate::rotation::StatusOptions;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::collections::HashMap;

pub(super) async fn handle(
    State(rotator): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let options = status_options(&super::strict_query(query.as_deref())?)?;
    let answer = rotator.status(&options).await?;
    Ok((StatusCode::OK, Json(answer)).into_response())
}

/// Reads the query: `app` (optional), and `code` (the function key, checked by the host);
/// anything else is refused, not ignored.
pub(super) fn status_options(query: &HashMap<String, String>) -> Result<StatusOptions, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", m);
    if let Some(unknown) = query
        .keys()
        .find(|k| !["app", "code"].contains(&k.as_str()))
    {
        return Err(bad(format!(
            "unknown query parameter \"{unknown}\"; expected app"
        )));
    }
    Ok(StatusOptions {
        app: super::api_key_rotator::app(query)?,
        http_triggered: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::functions::test_query as q;

    #[test]
    fn the_query_names_one_app_or_none() {
        let o = status_options(&q(&[("app", " A "), ("code", "fnkey")])).unwrap();
        assert_eq!(o.app.as_deref(), Some("A"));
        assert!(o.http_triggered);
        assert_eq!(status_options(&q(&[])).unwrap().app, None);
        for bad in [
            q(&[("app", "")]),
            q(&[("dryRun", "true")]),
            q(&[("App", "A")]),
        ] {
            assert_eq!(
                status_options(&bad).unwrap_err().status(),
                StatusCode::BAD_REQUEST
            );
        }
    }
}
