//! `POST /api/ToolkitApp` with `{"appName": "..."}`: the app's current key, renewed first when
//! it is inside the expiry window. The one answer that carries a full key.

use super::AppState;
use crate::azure::retry;
use crate::toolkit::request::{parse_request, response_body, ToolkitError};
use crate::toolkit::KeyRequest;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

pub(super) async fn handle(State(rotator): State<AppState>, body: Bytes) -> Response {
    match answer(&rotator, &body).await {
        Ok(body) => (StatusCode::OK, Json(body)).into_response(),
        Err(e) => {
            tracing::warn!(status = e.status, code = %e.code, "ToolkitApp: {}", e.message);
            let status =
                StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, Json(e.body())).into_response()
        }
    }
}

async fn answer(
    rotator: &crate::rotation::Rotator,
    body: &[u8],
) -> Result<serde_json::Value, ToolkitError> {
    let request = parse_request(body)?;
    // Missing or invalid sealed details surface here as a configuration error (500).
    let keys = rotator
        .key_source()
        .map_err(|e| ToolkitError::from_error(&e))?;
    // An HTTP-triggered call: the same retry policy and deadline as ApiKeyRotator's runs.
    let deadline = std::time::Instant::now() + rotator.settings().deadline(true);
    let call = keys.current_key(
        &request.app_name,
        KeyRequest {
            force: request.force,
            dry_run: request.dry_run,
        },
    );
    let grant = retry::with_policy(rotator.policy(), retry::with_deadline(deadline, call))
        .await
        .map_err(|e| ToolkitError::from_error(&e))?;
    tracing::info!(app = %grant.app_name, key = %grant.api_key, renewed = grant.renewed, "ToolkitApp answered");
    Ok(response_body(&grant))
}
