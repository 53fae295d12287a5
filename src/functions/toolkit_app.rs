//! `POST /api/ToolkitApp` with `{"appName": "..."}`: the app's current key, renewed first when
//! it is inside the expiry window. The one answer that carries a full key, so every answer says
//! `Cache-Control: no-store`, every key handed out is logged with who asked for it, and an
//! optional allow-list ([`ALLOWED_PRINCIPALS_SETTING`]) says which Entra principals may ask
//! for which app's key.

use super::{ApiError, AppState};
use crate::error::Error;
use crate::toolkit::request::{parse_request, response_body};
use crate::toolkit::KeyRequest;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::collections::BTreeMap;

/// Setting: which Entra principals may ask for which app's key, as JSON
/// `{"<apimAppName>": ["<principal object id or name>", ...], "*": [...]}` (`*`: every app).
/// When it is set, ToolkitApp answers only callers that App Service Authentication has signed
/// in (it forwards `X-MS-CLIENT-PRINCIPAL-ID` / `-NAME`, and strips those headers from what
/// callers send, so they cannot be forged from outside).
pub const ALLOWED_PRINCIPALS_SETTING: &str = "TOOLKIT_ALLOWED_PRINCIPALS";

/// Who asked, as far as the host tells: the signed-in principal, a fingerprint of the function
/// key (the host checks the key but does not forward its name), or nobody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    /// Signed in by App Service Authentication.
    Principal {
        /// `X-MS-CLIENT-PRINCIPAL-ID` (the object id).
        id: String,
        /// `X-MS-CLIENT-PRINCIPAL-NAME`, if forwarded.
        name: Option<String>,
    },
    /// A function key: the first 12 hex digits of its SHA-256, never the key.
    FunctionKey(String),
    /// Neither (local runs, `authLevel: anonymous`).
    Unknown,
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Principal { id, name: Some(n) } => write!(f, "principal {n} ({id})"),
            Caller::Principal { id, name: None } => write!(f, "principal {id}"),
            Caller::FunctionKey(fp) => write!(f, "function key sha256:{fp}"),
            Caller::Unknown => f.write_str("unidentified caller"),
        }
    }
}

/// The audit trail's origin of an HTTP-triggered run: the caller as [`Caller`] reads it.
pub(crate) fn audit_origin(headers: &HeaderMap, query: Option<&str>) -> crate::audit::Origin {
    crate::audit::Origin {
        trigger: crate::audit::Trigger::Http,
        who: Some(Caller::from_request(headers, query).to_string()),
    }
}

impl Caller {
    /// Reads the caller from the forwarded request's headers and query.
    pub(crate) fn from_request(headers: &HeaderMap, query: Option<&str>) -> Caller {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        if let Some(id) = get("x-ms-client-principal-id") {
            return Caller::Principal {
                id,
                name: get("x-ms-client-principal-name"),
            };
        }
        let key = get("x-functions-key").or_else(|| {
            url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .find(|(k, _)| k == "code")
                .map(|(_, v)| v.into_owned())
        });
        match key {
            Some(key) => {
                Caller::FunctionKey(crate::secret::sha256_hex(key.as_bytes())[..12].to_string())
            }
            None => Caller::Unknown,
        }
    }
}

/// Checks `caller` against the allow-list `setting` holds for `app_name`.
fn authorize(setting: Option<&str>, caller: &Caller, app_name: &str) -> Result<(), ApiError> {
    let Some(raw) = setting.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(());
    };
    let allowed: BTreeMap<String, Vec<String>> = crate::json::from_str(raw)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or_else(|| {
            ApiError::from(Error::config(format!(
                "{ALLOWED_PRINCIPALS_SETTING}: expected JSON like {{\"<apimAppName>\": [\"<principal object id>\"], \"*\": [...]}}"
            )))
        })?;
    let Caller::Principal { id, name } = caller else {
        // The caller's own sign-in, not the API manager's (which From<Error> makes a 502).
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Unauthenticated",
            format!(
                "{ALLOWED_PRINCIPALS_SETTING} is set: sign in with Entra ID (App Service Authentication must be enabled on this function app)"
            ),
        ));
    };
    let matches = |list: Option<&Vec<String>>| {
        list.is_some_and(|l| {
            l.iter().any(|p| {
                p.eq_ignore_ascii_case(id)
                    || name.as_deref().is_some_and(|n| p.eq_ignore_ascii_case(n))
            })
        })
    };
    if matches(allowed.get(app_name)) || matches(allowed.get("*")) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "{caller} may not ask for the key of app '{app_name}' ({ALLOWED_PRINCIPALS_SETTING})"
            ),
        ))
    }
}

pub(super) async fn handle(
    State(rotator): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let caller = Caller::from_request(&headers, query.as_deref());
    respond(&rotator, caller, &body).await
}

/// The standalone toolkit's routes (`apikey-rotator toolkit`): `POST /getkey`, answered as
/// ToolkitApp answers (the same parsing, renewal, body, errors and `no-store`), under the same
/// body limits. No front end vouches for the caller there, so principal and function-key headers
/// are not read: every caller is unidentified.
pub fn standalone_router(state: AppState, limits: super::ServerLimits) -> axum::Router {
    let getkey = axum::routing::post(|State(rotator): State<AppState>, body: Bytes| async move {
        respond(&rotator, Caller::Unknown, &body).await
    });
    axum::Router::new()
        .route(
            STANDALONE_ROUTE,
            super::only(getkey, &[axum::http::Method::POST]),
        )
        .fallback(super::not_found)
        .with_state(state)
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| async move {
                super::read_body_within(limits.body_read, request, next).await
            },
        ))
}

/// The standalone toolkit's one route.
pub const STANDALONE_ROUTE: &str = "/getkey";

/// ToolkitApp's answer to `body` from `caller`: the JSON body and `Cache-Control: no-store`.
async fn respond(rotator: &crate::rotation::Rotator, caller: Caller, body: &[u8]) -> Response {
    let mut response = match answer(rotator, &caller, body).await {
        Ok(body) => (StatusCode::OK, Json(body)).into_response(),
        Err(e) => {
            tracing::warn!(status = e.status().as_u16(), code = %e.code(), caller = %caller, "ToolkitApp: {}", e.message());
            e.into_response()
        }
    };
    // The body may carry a key: no cache between the caller and here may keep it.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn answer(
    rotator: &crate::rotation::Rotator,
    caller: &Caller,
    body: &[u8],
) -> Result<serde_json::Value, ApiError> {
    let request = parse_request(body)?;
    authorize(
        rotator.settings().get(ALLOWED_PRINCIPALS_SETTING),
        caller,
        &request.app_name,
    )?;
    // Missing or invalid sealed details surface here as a configuration error (500).
    let keys = rotator.key_source()?;
    // An HTTP-triggered call: the same retry policy and deadline as ApiKeyRotator's runs.
    let call = rotator.call(true);
    let request_options = KeyRequest {
        force: request.force,
        dry_run: request.dry_run,
    };
    let grant = keys
        .current_key(&call, &request.app_name, request_options)
        .await?;
    tracing::info!(
        app = %grant.app_name,
        key = %grant.api_key,
        renewed = grant.renewed,
        forced = request.force,
        caller = %caller,
        "ToolkitApp handed out a key"
    );
    let origin = crate::audit::Origin {
        trigger: crate::audit::Trigger::Http,
        who: Some(caller.to_string()),
    };
    crate::audit::record_handout(rotator.audit(), &origin, &grant, request.dry_run).await;
    Ok(response_body(&grant))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    /// The principal the host forwards wins; a function key is only fingerprinted.
    #[test]
    fn who_asked() {
        let p = Caller::from_request(
            &headers(&[
                ("x-ms-client-principal-id", "0b5c"),
                ("x-ms-client-principal-name", "ci@contoso.com"),
                ("x-functions-key", "the-function-key-value"),
            ]),
            None,
        );
        assert_eq!(p.to_string(), "principal ci@contoso.com (0b5c)");
        let k = Caller::from_request(
            &headers(&[("x-functions-key", "the-function-key-value")]),
            None,
        );
        let q = Caller::from_request(&headers(&[]), Some("code=the-function-key-value"));
        assert_eq!(k, q);
        assert!(k.to_string().starts_with("function key sha256:"));
        assert!(!k.to_string().contains("the-function-key-value"));
        assert_eq!(Caller::from_request(&headers(&[]), None), Caller::Unknown);
    }

    /// The standalone router serves POST /getkey only (a JSON 405 naming POST otherwise, a
    /// JSON 404 elsewhere, ToolkitApp's route included), with ToolkitApp's answers and no-store.
    #[tokio::test]
    async fn the_standalone_router_serves_getkey_only() {
        use axum::body::Body;
        use axum::http::{Method, Request};
        let settings = crate::settings::Settings::from_map(Default::default());
        let app = standalone_router(
            std::sync::Arc::new(crate::rotation::Rotator::new(settings)),
            super::super::ServerLimits::default(),
        );
        let call = |method: Method, uri: &str, body: &'static str| {
            let request = Request::builder()
                .method(method)
                .uri(uri)
                .body(Body::from(body))
                .unwrap();
            super::super::dispatch(app.clone(), request)
        };
        let r = call(Method::POST, STANDALONE_ROUTE, "{}").await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("appName is required"),
            "{body}"
        );
        let r = call(Method::GET, STANDALONE_ROUTE, "").await;
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[header::ALLOW], "POST");
        for uri in ["/api/ToolkitApp", "/", "/getkey/x"] {
            let r = call(Method::POST, uri, "{}").await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{uri}");
        }
    }

    /// Without the setting anyone the host let in may ask; with it, only listed principals,
    /// per app or for every app.
    #[test]
    fn allow_list() {
        let alice = Caller::Principal {
            id: "a1".into(),
            name: Some("alice@contoso.com".into()),
        };
        let bob = Caller::Principal {
            id: "b2".into(),
            name: None,
        };
        assert!(authorize(None, &bob, "App1").is_ok());
        let setting = r#"{"App1": ["alice@contoso.com"], "*": ["ops-id"]}"#;
        assert!(authorize(Some(setting), &alice, "App1").is_ok());
        assert_eq!(
            authorize(Some(setting), &alice, "App2")
                .unwrap_err()
                .status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            authorize(Some(setting), &bob, "App1").unwrap_err().status(),
            StatusCode::FORBIDDEN
        );
        let ops = Caller::Principal {
            id: "OPS-ID".into(),
            name: None,
        };
        assert!(authorize(Some(setting), &ops, "App2").is_ok());
        let key = Caller::FunctionKey("abc".into());
        assert_eq!(
            authorize(Some(setting), &key, "App1").unwrap_err().status(),
            StatusCode::UNAUTHORIZED
        );
        let e = authorize(Some(r#"{"App1": "alice"}"#), &alice, "App1").unwrap_err();
        assert_eq!((e.status().as_u16(), e.code()), (500, "ConfigurationError"));
        assert!(e.message().contains(ALLOWED_PRINCIPALS_SETTING));
        let e = authorize(Some(r#"{"App1": [], "App1": ["alice"]}"#), &alice, "App1").unwrap_err();
        assert_eq!(
            e.status().as_u16(),
            500,
            "duplicate keys are not an allow-list"
        );
    }
}
