//! A ToolkitApp in another function app, used as the key source when `TOOLKIT_APP_URL` is set
//! (the sealed details then live only there).

use super::{KeyGrant, KeyRequest, KeySource};
use crate::azure::http::transport_error;
use crate::azure::retry::{self, Call, Idempotency};
use crate::error::{Error, ErrorKind, Result};
use crate::secret::{ApiKey, Secret};
use crate::settings::Settings;
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

const SERVICE: &str = "ToolkitApp";

/// Calls a remote ToolkitApp over HTTP.
#[derive(Debug, Clone)]
pub struct RemoteToolkit {
    url: url::Url,
    function_key: Option<Secret>,
    http: reqwest::Client,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GrantBody {
    app_name: String,
    api_key: String,
    #[serde(default, with = "time::serde::rfc3339::option")]
    issued_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
    renewed: bool,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: Option<String>,
    message: Option<String>,
}

impl RemoteToolkit {
    /// A client for the ToolkitApp at `url`, sending `function_key` as `x-functions-key`.
    pub fn new(url: url::Url, function_key: Option<Secret>, http: reqwest::Client) -> Self {
        Self {
            url,
            function_key,
            http,
        }
    }

    /// From `TOOLKIT_APP_URL` and `TOOLKIT_APP_KEY`; `None` when the URL is unset (or invalid,
    /// which the settings report).
    pub fn from_settings(settings: &Settings, http: reqwest::Client) -> Option<Self> {
        let url = settings.toolkit_app_url.clone()?;
        Some(Self::new(url, settings.toolkit_app_key.clone(), http))
    }

    fn error_for(&self, status: u16, body: &[u8]) -> Error {
        let detail = serde_json::from_slice::<ErrorBody>(body)
            .ok()
            .map(|b| b.error);
        let code = detail.as_ref().and_then(|d| d.code.clone());
        let message = detail
            .and_then(|d| d.message)
            .unwrap_or_else(|| "no error details".to_string());
        let (kind, hint) = match status {
            404 => (ErrorKind::NotFound, ""),
            400 => (ErrorKind::InvalidInput, ""),
            500 => (ErrorKind::ConfigInvalid, ""),
            // The Functions host answers 401 without a body when the function key is wrong.
            401 => (
                ErrorKind::Unauthenticated,
                " (check TOOLKIT_APP_KEY, the ToolkitApp function key)",
            ),
            403 => (ErrorKind::PermissionDenied, ""),
            _ => (ErrorKind::Unavailable, ""),
        };
        let head = match &code {
            Some(c) => format!("{SERVICE} answered {status} {c}"),
            None => format!("{SERVICE} answered {status}"),
        };
        let mut e = Error::new(kind, format!("{head}: {message}{hint}")).with_status(status);
        if kind == ErrorKind::Unavailable {
            e = e.set_temporary(true);
        }
        if let Some(c) = code {
            e = e.with_code(c);
        }
        e
    }
}

#[async_trait]
impl KeySource for RemoteToolkit {
    async fn current_key(
        &self,
        call: &Call,
        app_name: &str,
        request: KeyRequest,
    ) -> Result<KeyGrant> {
        // Without force the ToolkitApp renews only inside the renewal window, so asking again
        // after a lost answer returns the key the first call made; a forced renewal would make
        // another key, so it is not repeated blindly.
        let idempotency = if request.force {
            Idempotency::NotIdempotent
        } else {
            Idempotency::Idempotent
        };
        let body = json!({
            "appName": app_name,
            "force": request.force,
            "dryRun": request.dry_run,
        });
        let resp = retry::send(call, SERVICE, idempotency, || async {
            let mut req = self.http.post(self.url.clone()).json(&body);
            if let Some(key) = &self.function_key {
                req = req.header("x-functions-key", key.expose());
            }
            Ok(req)
        })
        .await?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| transport_error(SERVICE, &e))?;
        if !(200..300).contains(&status) {
            return Err(self
                .error_for(status, &body)
                .with_context("app", app_name.to_string()));
        }
        // serde's message for a bad body could quote the key, so only the position is kept.
        let grant: GrantBody = serde_json::from_slice(&body).map_err(|e| {
            Error::unexpected(format!(
                "{SERVICE}: malformed response at line {} column {}; expected appName, apiKey, issuedAt, expiresAt, renewed, message",
                e.line(),
                e.column()
            ))
        })?;
        if grant.app_name != app_name {
            return Err(Error::unexpected(format!(
                "{SERVICE} answered for app '{}' when asked for '{app_name}'",
                grant.app_name
            )));
        }
        if grant.api_key.is_empty() {
            return Err(Error::unexpected(format!(
                "{SERVICE} answered an empty apiKey"
            )));
        }
        Ok(KeyGrant {
            app_name: grant.app_name,
            api_key: ApiKey::new(grant.api_key),
            issued_at: grant.issued_at,
            expires_at: grant.expires_at,
            renewed: grant.renewed,
            message: grant.message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> Call {
        Call::new(
            std::sync::Arc::new(crate::azure::retry::RetryPolicy::default()),
            None,
        )
    }
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use axum::{Json, Router};
    use serde_json::Value;

    async fn serve(router: Router) -> url::Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        url::Url::parse(&format!("http://{addr}/api/ToolkitApp")).unwrap()
    }

    async fn handler(headers: HeaderMap, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
        if headers.get("x-functions-key").and_then(|v| v.to_str().ok()) != Some("fk-123") {
            return (StatusCode::UNAUTHORIZED, Json(Value::Null));
        }
        let app = body["appName"].as_str().unwrap_or_default().to_string();
        match app.as_str() {
            "known" => (
                StatusCode::OK,
                Json(json!({
                    "appName": app, "apiKey": "abcdefghijklmnopqrstuvwxyz012345",
                    "issuedAt": "2026-11-22T06:00:00Z", "expiresAt": null,
                    "renewed": body["force"] == json!(true),
                    "message": format!("dryRun={}", body["dryRun"]),
                })),
            ),
            "missing" => (
                StatusCode::NOT_FOUND,
                Json(
                    json!({"error": {"code": "AppNotFound", "message": "API manager does not know app 'missing'"}}),
                ),
            ),
            "config" => (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(
                    json!({"error": {"code": "ConfigurationError", "message": "Incorrect Toolkit UUID"}}),
                ),
            ),
            _ => (
                StatusCode::BAD_GATEWAY,
                Json(
                    json!({"error": {"code": "ApiManagerError", "message": "Apigee answered 503"}}),
                ),
            ),
        }
    }

    #[tokio::test]
    async fn round_trip_and_error_mapping() {
        let url = serve(Router::new().route("/api/ToolkitApp", post(handler))).await;
        let http = reqwest::Client::new();
        let rt = RemoteToolkit::new(url.clone(), Some(Secret::new("fk-123")), http.clone());

        let g = rt
            .current_key(
                &call(),
                "known",
                KeyRequest {
                    force: true,
                    dry_run: true,
                },
            )
            .await
            .unwrap();
        assert_eq!(g.api_key.expose(), "abcdefghijklmnopqrstuvwxyz012345");
        assert!(g.renewed);
        assert_eq!(g.message, "dryRun=true");
        assert_eq!(g.issued_at.unwrap().unix_timestamp(), 1_795_327_200);
        assert!(g.expires_at.is_none());

        let cases = [
            ("missing", ErrorKind::NotFound, "AppNotFound", false),
            (
                "config",
                ErrorKind::ConfigInvalid,
                "ConfigurationError",
                false,
            ),
            ("other", ErrorKind::Unavailable, "ApiManagerError", true),
        ];
        for (app, kind, code, temporary) in cases {
            let e = rt
                .current_key(&call(), app, KeyRequest::default())
                .await
                .unwrap_err();
            assert_eq!(e.kind(), kind, "{app}");
            assert_eq!(e.code(), code);
            assert_eq!(e.is_temporary(), temporary);
        }

        let unauth = RemoteToolkit::new(url, None, http);
        let e = unauth
            .current_key(&call(), "known", KeyRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthenticated);
        assert!(e.to_string().contains("TOOLKIT_APP_KEY"), "{e}");
    }

    #[test]
    fn from_settings_needs_the_url() {
        let http = reqwest::Client::new();
        let s = Settings::from_map(Default::default());
        assert!(RemoteToolkit::from_settings(&s, http.clone()).is_none());
        let s = Settings::from_map(
            [(
                "TOOLKIT_APP_URL".to_string(),
                "https://tk.example/api/ToolkitApp".to_string(),
            )]
            .into_iter()
            .collect(),
        );
        let rt = RemoteToolkit::from_settings(&s, http).unwrap();
        assert_eq!(rt.url.as_str(), "https://tk.example/api/ToolkitApp");
    }
}
