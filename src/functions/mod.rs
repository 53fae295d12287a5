//! The Azure Functions custom-handler surface (PRODUCT.md §3): readiness, the two forwarded
//! HTTP functions, and the timer invocation.

mod api_key_rotator;
mod error;
pub mod host;
mod rotator_timer;
mod toolkit_app;

pub use error::ApiError;

use crate::rotation::Rotator;
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

/// Shared state of the handler: one [`Rotator`] for the life of the process.
pub type AppState = Arc<Rotator>;

/// The handler's routes. Tests call `router(state).oneshot(request)` without a socket.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(ready))
        .route("/api/ToolkitApp", post(toolkit_app::handle))
        .route("/api/ApiKeyRotator", get(api_key_rotator::handle))
        .route("/RotatorTimer", post(rotator_timer::handle))
        .fallback(not_found)
        .with_state(state)
}

/// The host polls `GET /` until it answers; answer at once, whatever the settings.
async fn ready() -> &'static str {
    "apikey-rotator ready"
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "NotFound",
        format!("no function at {}", uri.path()),
    )
}

/// Serves the handler on `127.0.0.1:port` (the host calls loopback) until ctrl-c or SIGTERM.
pub async fn serve(state: AppState, port: u16) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    tracing::info!(
        port = listener.local_addr()?.port(),
        "custom handler listening"
    );
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
