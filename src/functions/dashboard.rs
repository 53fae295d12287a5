//! `GET /api/Dashboard?app=`: the dashboard page ([`crate::dashboard::page`]): the status (read only,
//! as KeyStatus) and the audit trail's tail as one self-contained HTML page, 200 whatever the
//! drift. An unreadable audit trail is said on the page, not a failure of the call. What stops
//! the status from starting (settings, mapping, an `app` not in the mapping, a bad query) is
//! answered as every function answers it: the JSON error with its stable code.

use super::{ApiError, AppState};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The page's policy: nothing may be loaded (no script, image, font or style from anywhere);
/// only the page's own `<style>` applies. The browser enforces what `dashboard::render`
/// promises.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub(super) async fn handle(
    State(rotator): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    // The same query as KeyStatus: `app` and the host's `code`, nothing else.
    let options = super::key_status::status_options(&super::strict_query(query.as_deref())?)?;
    let html = crate::dashboard::page(&rotator, &options).await?;
    let mut response = (StatusCode::OK, html).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        // The page shows keys' last four and the targets' names: no cache keeps it.
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    Ok(response)
}
