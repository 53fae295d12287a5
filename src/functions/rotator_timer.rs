//! `POST /RotatorTimer`: the timer invocation. Runs the same rotation as ApiKeyRotator and
//! answers `{"Outputs":{},"Logs":[...],"ReturnValue":<report>}`; non-2xx when the run had
//! errors, so the host marks the invocation failed.

use super::host::{parse_timer_invocation, InvocationResponse};
use super::{ApiError, AppState};
use crate::rotation::RunOptions;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

pub(super) async fn handle(State(rotator): State<AppState>, body: Bytes) -> Response {
    let timer = match parse_timer_invocation(&body) {
        Ok(t) => t,
        Err(m) => {
            return ApiError::new(StatusCode::BAD_REQUEST, "BadInvocation", m).into_response()
        }
    };
    tracing::info!(past_due = timer.is_past_due, last = ?timer.last, next = ?timer.next, "RotatorTimer fired");
    let mut logs = Vec::new();
    if timer.is_past_due {
        logs.push("The timer is past due: running the missed rotation now.".to_string());
    }
    let options = RunOptions {
        origin: crate::audit::Origin {
            trigger: crate::audit::Trigger::Timer,
            who: None,
        },
        ..RunOptions::default()
    };
    match rotator.run(&options).await {
        Ok(report) => {
            logs.push(report.human_summary());
            let status = if report.has_errors() {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::OK
            };
            let body = InvocationResponse {
                outputs: Default::default(),
                logs,
                return_value: report,
            };
            (status, Json(body)).into_response()
        }
        Err(e) => {
            let error = ApiError::from(e);
            logs.push(
                error.body()["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
            let body = InvocationResponse {
                outputs: Default::default(),
                logs,
                return_value: error.body(),
            };
            (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
        }
    }
}
