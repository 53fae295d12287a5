//! The Azure Functions custom-handler surface (PRODUCT.md §3): readiness, the forwarded HTTP
//! functions (ToolkitApp, ApiKeyRotator, KeyStatus), and the timer invocation.

mod api_key_rotator;
mod dashboard;
mod error;
pub mod host;
mod key_rollback;
mod key_status;
mod rotator_timer;
mod runs;
mod toolkit_app;

pub use error::ApiError;
pub use toolkit_app::{standalone_router, ALLOWED_PRINCIPALS_SETTING, STANDALONE_ROUTE};

use crate::rotation::Rotator;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use std::sync::Arc;
use std::time::Duration;

/// Shared state of the handler: one [`Rotator`] for the life of the process.
pub type AppState = Arc<Rotator>;

/// Every route the handler serves, with the methods its `function.json` declares (the host
/// refuses the others before forwarding; the handler agrees, with a JSON 405).
pub const ROUTES: [(&str, &[Method]); 7] = [
    ("/", &[Method::GET]),
    ("/api/ToolkitApp", &[Method::POST]),
    ("/api/ApiKeyRotator", &[Method::GET]),
    ("/RotatorTimer", &[Method::POST]),
    ("/api/KeyStatus", &[Method::GET]),
    ("/api/KeyRollback", &[Method::POST]),
    ("/api/Dashboard", &[Method::GET]),
];

/// How long a client may take over its request: slow clients must not hold connections (and
/// the tasks behind them) forever.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// From the connection's first byte (or the previous answer) to the end of the headers.
    pub header_read: Duration,
    /// From the end of the headers to the end of the body.
    pub body_read: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            body_read: Duration::from_secs(30),
        }
    }
}

/// Largest request body any function accepts (ToolkitApp's own limit is smaller).
pub const MAX_REQUEST_BODY: usize = 1024 * 1024;

/// A parsed query of `pairs`, for the query readers' tests.
#[cfg(test)]
pub(crate) fn test_query(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The handler's routes. Tests send requests through them with [`dispatch`], without a socket.
///
/// Paths match without regard to case, as the Functions host's routes do: the host forwards
/// the path as the caller wrote it (`/api/apikeyrotator`), so a path that differs from a route
/// only in case is rewritten to the route's spelling and routed again.
pub fn router(state: AppState) -> Router {
    router_with(state, ServerLimits::default())
}

/// [`router`] with these limits: a body not read within `body_read` is answered 408, one over
/// [`MAX_REQUEST_BODY`] 413, both with the JSON error body.
pub fn router_with(state: AppState, limits: ServerLimits) -> Router {
    routes(state).layer(axum::middleware::from_fn(
        move |request: Request, next: axum::middleware::Next| async move {
            read_body_within(limits.body_read, request, next).await
        },
    ))
}

/// Reads the whole body before the function runs, within `limit`.
async fn read_body_within(
    limit: Duration,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(limit, axum::body::to_bytes(body, MAX_REQUEST_BODY)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                .await
        }
        Ok(Err(_)) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            format!("the request body is over {MAX_REQUEST_BODY} bytes or was cut short"),
        )
        .into_response(),
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "RequestTimeout",
            format!(
                "the request body did not arrive within {} s",
                limit.as_secs_f32()
            ),
        )
        .into_response(),
    }
}

fn routes(state: AppState) -> Router {
    let exact = Router::new()
        .route("/", only(get(ready), ROUTES[0].1))
        .route(
            "/api/ToolkitApp",
            only(post(toolkit_app::handle), ROUTES[1].1),
        )
        .route(
            "/api/ApiKeyRotator",
            only(get(api_key_rotator::handle), ROUTES[2].1),
        )
        .route(
            "/RotatorTimer",
            only(post(rotator_timer::handle), ROUTES[3].1),
        )
        .route("/api/KeyStatus", only(get(key_status::handle), ROUTES[4].1))
        .route(
            "/api/KeyRollback",
            only(post(key_rollback::handle), ROUTES[5].1),
        )
        .route("/api/Dashboard", only(get(dashboard::handle), ROUTES[6].1))
        .with_state(state);
    let canonical = exact.clone().fallback(not_found);
    exact.fallback(move |request: Request| {
        let canonical = canonical.clone();
        async move { case_insensitive(canonical, request).await }
    })
}

/// Routes `request` again under its path's canonical spelling, or answers 404.
async fn case_insensitive(canonical: Router, request: Request) -> Response {
    match canonical_path(request.uri()) {
        Some(uri) => {
            let (mut parts, body) = request.into_parts();
            parts.uri = uri;
            dispatch(canonical, Request::from_parts(parts, body)).await
        }
        None => not_found(request.uri().clone()).await.into_response(),
    }
}

/// Sends `request` through `app` (its routing, middleware and handlers), as the server's
/// connections do: a direct call of the router as a service, through the hyper adapter the
/// server uses anyway.
async fn dispatch(app: Router, request: Request) -> Response {
    use hyper::service::Service as _;
    match hyper_util::service::TowerToHyperService::new(app)
        .call(request)
        .await
    {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// `uri` with its path spelled as the route it matches without regard to case, when that
/// differs from how it was written.
fn canonical_path(uri: &Uri) -> Option<Uri> {
    let path = uri.path();
    let (route, _) = ROUTES
        .iter()
        .find(|(route, _)| route.eq_ignore_ascii_case(path) && *route != path)?;
    let rewritten = match uri.query() {
        Some(q) => format!("{route}?{q}"),
        None => route.to_string(),
    };
    rewritten.parse().ok()
}

/// `route` answering any other method than `methods` with a JSON 405 and an `Allow` header.
fn only(route: MethodRouter<AppState>, methods: &'static [Method]) -> MethodRouter<AppState> {
    route.fallback(move |method: Method| async move {
        let allow = methods
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let mut response = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{method} is not allowed here; use {allow}"),
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&allow) {
            response.headers_mut().insert(header::ALLOW, v);
        }
        response
    })
}

/// The query string as a map, refusing a parameter given twice (`?dryRun=true&dryRun=false`
/// must not run for real because the last one won) with a 400 naming it.
pub(crate) fn strict_query(
    raw: Option<&str>,
) -> Result<std::collections::HashMap<String, String>, ApiError> {
    let mut query = std::collections::HashMap::new();
    for (name, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if query.insert(name.to_string(), value.into_owned()).is_some() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("query parameter {name} is given more than once; give it once"),
            ));
        }
    }
    Ok(query)
}

/// The host polls `GET /` until it answers; answer at once, whatever the settings.
async fn ready() -> &'static str {
    "apikey-rotator ready"
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
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
    let limits = ServerLimits::default();
    serve_on(
        listener,
        router_with(state, limits),
        limits,
        shutdown_signal(),
    )
    .await?;
    // Runs answered with a 202 are not requests in flight: each ends by its deadline and
    // releases its lock before the process goes.
    runs::RUNS.wait_all().await;
    Ok(())
}

/// Serves `app` on `listener` over HTTP/1.1 until `shutdown` completes, then lets the requests
/// in flight finish. A connection whose request headers do not arrive within
/// `limits.header_read` is closed (axum's own server has no such limit).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    accept_loop(listener, None, app, limits, shutdown).await;
    Ok(())
}

/// [`serve_on`] over TLS with `config` (the on-premises toolkit): a handshake gets the same
/// time as request headers.
pub(crate) async fn serve_tls_on(
    listener: tokio::net::TcpListener,
    config: std::sync::Arc<rustls::ServerConfig>,
    app: Router,
    limits: ServerLimits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    accept_loop(listener, Some(acceptor), app, limits, shutdown).await;
}

/// The one accept loop of both: each connection in a task of its own, watched so that
/// `shutdown` waits for the requests in flight.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    limits: ServerLimits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (tls, app, watcher) = (tls.clone(), app.clone(), graceful.watcher());
                tokio::spawn(async move {
                    let Some(acceptor) = tls else {
                        return serve_connection(stream, app, limits, watcher).await;
                    };
                    match tokio::time::timeout(limits.header_read, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(stream, app, limits, watcher).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Serves one connection's HTTP/1.1 requests with the header-read limit, until it closes or a
/// graceful shutdown ends it.
async fn serve_connection<S>(
    stream: S,
    app: Router,
    limits: ServerLimits,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(app);
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(error = %e, "connection ended");
    }
}

/// Completes on ctrl-c or (on Unix) SIGTERM.
pub(crate) async fn shutdown_signal() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use futures::StreamExt;

    /// A router over empty settings: every function answers (with its settings error) but the
    /// routing is what is under test.
    fn app() -> Router {
        let settings = crate::settings::Settings::from_map(Default::default());
        router(Arc::new(Rotator::new(settings)))
    }

    async fn call(method: Method, uri: &str) -> (StatusCode, serde_json::Value) {
        let response = dispatch(
            app(),
            Request::builder()
                .method(method)
                .uri(uri)
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    /// A body that stops arriving is answered 408 with the JSON error once the limit passes.
    #[tokio::test]
    async fn a_slow_body_is_cut_off() {
        let settings = crate::settings::Settings::from_map(Default::default());
        let limits = ServerLimits {
            header_read: Duration::from_secs(10),
            body_read: Duration::from_millis(200),
        };
        let app = router_with(Arc::new(Rotator::new(settings)), limits);
        let stream = futures::stream::once(async {
            Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"{\"appName\""))
        })
        .chain(futures::stream::pending());
        let response = dispatch(
            app,
            Request::builder()
                .method(Method::POST)
                .uri("/api/ToolkitApp")
                .body(Body::from_stream(stream))
                .unwrap(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["error"]["code"], "RequestTimeout");
    }

    /// A client that never finishes its headers is disconnected after the header limit; a
    /// complete request on the same server is answered.
    #[tokio::test]
    async fn a_slow_client_cannot_hold_a_connection() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let settings = crate::settings::Settings::from_map(Default::default());
        let limits = ServerLimits {
            header_read: Duration::from_millis(300),
            body_read: Duration::from_secs(5),
        };
        let app = router_with(Arc::new(Rotator::new(settings)), limits);
        let server = tokio::spawn(serve_on(listener, app, limits, std::future::pending()));
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        // The guard only keeps a broken server from hanging the test.
        let read = tokio::time::timeout(Duration::from_secs(20), slow.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "the connection was not closed");
        let mut ok = tokio::net::TcpStream::connect(addr).await.unwrap();
        ok.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        ok.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        server.abort();
    }

    /// A parameter given twice is a 400 naming it, before anything runs.
    #[tokio::test]
    async fn duplicate_query_parameters_are_refused() {
        let (status, body) = call(Method::GET, "/api/ApiKeyRotator?dryRun=true&dryRun=false").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("query parameter dryRun is given more than once"),
            "{body}"
        );
        let q = strict_query(Some("app=a%20b&dryRun=true")).unwrap();
        assert_eq!(q["app"], "a b");
        assert!(strict_query(None).unwrap().is_empty());
    }

    /// Any spelling of a route reaches it, query kept; an unknown path is a JSON 404.
    #[tokio::test]
    async fn routes_match_without_regard_to_case() {
        for uri in [
            "/api/ApiKeyRotator?dryRun=maybe",
            "/api/apikeyrotator?dryRun=maybe",
            "/API/APIKEYROTATOR?dryRun=maybe",
            "/api/keystatus?dryRun=maybe",
        ] {
            let (status, body) = call(Method::GET, uri).await;
            assert_ne!(status, StatusCode::NOT_FOUND, "{uri}: {body}");
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{uri}: {body}");
        }
        for uri in ["/api/toolkitapp", "/rotatortimer"] {
            let (status, body) = call(Method::POST, uri).await;
            assert_ne!(status, StatusCode::NOT_FOUND, "{uri}: {body}");
        }
        let (status, body) = call(Method::GET, "/api/Nothing").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "NotFound");
    }

    /// Each route takes exactly the methods its function.json declares; any other gets a 405
    /// with the JSON error body and `Allow`, whatever the path's case.
    #[tokio::test]
    async fn methods_are_those_function_json_declares() {
        for (route, methods) in ROUTES {
            if route == "/" {
                continue;
            }
            let folder = route.trim_start_matches("/api/").trim_start_matches('/');
            let path = format!("{}/{folder}/function.json", env!("CARGO_MANIFEST_DIR"));
            let declared: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let trigger = &declared["bindings"][0];
            let expected: Vec<String> = match trigger["methods"].as_array() {
                Some(m) => m
                    .iter()
                    .map(|v| v.as_str().unwrap().to_ascii_uppercase())
                    .collect(),
                // The timer: the host invokes it with POST.
                None => vec!["POST".to_string()],
            };
            let ours: Vec<String> = methods.iter().map(|m| m.to_string()).collect();
            assert_eq!(ours, expected, "{path}");
            for wrong in [Method::GET, Method::POST, Method::PUT, Method::DELETE] {
                if methods.contains(&wrong) {
                    continue;
                }
                let (status, body) = call(wrong.clone(), &route.to_ascii_lowercase()).await;
                assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{wrong} {route}");
                assert_eq!(body["error"]["code"], "MethodNotAllowed", "{wrong} {route}");
            }
        }
    }
}
