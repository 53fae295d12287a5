//! A consumer application's own HTTP API that receives its key.
//!
//! The contract (documented in the README): `GET {httpURL}?appName=X` answers 200
//! `{"appName","apimAppName","apiKeySha256","expiresAt"}` or 404 when nothing is stored (405 when
//! the app cannot tell, in which case the key is always pushed); `POST {httpURL}` with
//! `{"appName","apimAppName","apiKey","expiresAt"}` stores a key and answers 2xx.

//!
//! The folder owns the kind whole: its mapping section (`mapping.rs`, `schema.json`), its
//! planner ([`KIND`]) and its client ([`ApplicationApi`], whose `parse_error` reads the API's
//! answers).

mod mapping;

pub use mapping::{ApiAuth, ApplicationApiMapping, HEADER_SECRET_PREFIX};

use super::{
    Container, Entry, Kind, PlannedContainer, Remedies, Stored, TargetContext, TargetType, Write,
};
use crate::azure::credential::bearer;
use crate::azure::http::kind_for_status;
use crate::azure::retry::{self, Idempotency};
use crate::error::{Error, Result};
use crate::mapping::walk::{Walked, Walker};
use crate::mapping::AppsMapping;
use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION};
use std::sync::Arc;

/// The report's type of an application API.
pub const TYPE: TargetType =
    TargetType::new("APPLICATION_API", "application API", "the key of", true)
.with_remedies(Remedies {
    forbidden: Some("check what the API requires: the app role for the mapping's scope, or the header setting's value"),
    not_found: Some("check httpURL and appName in the mapping"),
    unauthenticated: Some("check what the API requires: the app role for the mapping's scope, or the header setting's value"),
});

/// The application API kind: the `applicationApis` section, one container per endpoint (URL
/// and authentication), however many entries name it.
pub struct ApplicationApiKind;

/// The kind, for the registry.
pub static KIND: ApplicationApiKind = ApplicationApiKind;

impl Kind for ApplicationApiKind {
    fn sections(&self) -> &'static [&'static str] {
        &["applicationApis"]
    }

    fn types(&self) -> &'static [TargetType] {
        &[TYPE]
    }

    fn read(
        &self,
        _: &str,
        entry: &serde_json::Value,
        path: &str,
        walker: &mut Walker,
    ) -> Option<Walked> {
        mapping::read(walker, entry, path)
    }

    fn schema(&self) -> &'static str {
        include_str!("schema.json")
    }

    fn plan(
        &self,
        mapping: &AppsMapping,
        context: &TargetContext,
    ) -> Result<Vec<PlannedContainer>> {
        let mut apis: Vec<(ApplicationApi, Vec<Entry>)> = Vec::new();
        for api in mapping.groups::<ApplicationApiMapping>() {
            let entry = Entry {
                name: api.app_name.clone(),
                apim_app_name: api.apim_app_name.clone(),
            };
            match apis
                .iter_mut()
                .find(|(c, _)| c.serves(&api.http_url, &api.auth))
            {
                Some((_, entries)) => entries.push(entry),
                None => apis.push((
                    ApplicationApi::new(&api.http_url, api.auth.clone(), context),
                    vec![entry],
                )),
            }
        }
        Ok(apis
            .into_iter()
            .map(|(c, entries)| PlannedContainer {
                container: Arc::new(c),
                entries,
            })
            .collect())
    }
}

/// One application API endpoint (URL and auth); its entries are app names.
pub struct ApplicationApi {
    url: url::Url,
    label: String,
    auth: ApiAuth,
    context: TargetContext,
}

impl ApplicationApi {
    /// The API at `url` with `auth`.
    pub fn new(url: &url::Url, auth: ApiAuth, context: &TargetContext) -> Self {
        let label = url[url::Position::BeforeHost..url::Position::AfterPath].to_string();
        Self {
            url: url.clone(),
            label,
            auth,
            context: context.clone(),
        }
    }

    /// Whether this container is the endpoint at `url` with `auth`.
    pub fn serves(&self, url: &url::Url, auth: &ApiAuth) -> bool {
        &self.url == url && &self.auth == auth
    }

    async fn authorize(&self, request: reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder> {
        Ok(match &self.auth {
            ApiAuth::None => request,
            ApiAuth::ManagedIdentity { scope } => {
                let token =
                    bearer(&self.context.call, self.context.credential.as_ref(), scope).await?;
                let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| Error::unexpected("the token is not a valid header value"))?;
                value.set_sensitive(true);
                request.header(AUTHORIZATION, value)
            }
            ApiAuth::Header {
                name,
                value_setting,
            } => {
                let value = self.context.settings.get(value_setting).ok_or_else(|| {
                    Error::config(format!(
                        "app setting {value_setting} (header {name}) is not set"
                    ))
                })?;
                let name = HeaderName::try_from(name.as_str())
                    .map_err(|_| Error::config(format!("\"{name}\" is not a valid header name")))?;
                let mut value = HeaderValue::from_str(value).map_err(|_| {
                    Error::config(format!(
                        "app setting {value_setting} is not a valid header value"
                    ))
                })?;
                value.set_sensitive(true);
                request.header(name, value)
            }
        })
    }

    /// Sends the request `build` makes, authorized, under the shared retry policy. Both calls
    /// are idempotent: a GET, and a POST that sets an app's key to a whole value.
    async fn send(&self, build: impl Fn() -> reqwest::RequestBuilder) -> Result<reqwest::Response> {
        retry::send(
            &self.context.call,
            &format!("application API {}", self.label),
            Idempotency::Idempotent,
            || self.authorize(build()),
        )
        .await
    }

    async fn read_one(&self, app_name: &str) -> Result<Stored> {
        let response = self
            .send(|| {
                self.context
                    .http
                    .get(self.url.clone())
                    .query(&[("appName", app_name)])
            })
            .await?;
        let status = response.status().as_u16();
        match status {
            200 => {
                let body: serde_json::Value = response.json().await.map_err(|e| {
                    Error::unexpected(format!(
                        "application API {}: unreadable answer: {e}",
                        self.label
                    ))
                })?;
                match body["apiKeySha256"].as_str() {
                    Some(f) => Ok(Stored::Fingerprint(f.to_string())),
                    None => Err(Error::unexpected(format!(
                        "application API {}: the answer to GET has no apiKeySha256",
                        self.label
                    ))),
                }
            }
            404 | 405 => Ok(Stored::Missing),
            _ => Err(self.parse_error(status, &response.bytes().await.unwrap_or_default())),
        }
    }

    async fn write_one(&self, write: &Write) -> Result<()> {
        let body = serde_json::json!({
            "appName": write.name,
            "apimAppName": write.apim_app_name,
            "apiKey": write.key.expose(),
            "expiresAt": write.expires_at.map(|t| crate::rfc3339::format(t, crate::rfc3339::Fraction::Millis)),
        });
        let response = self
            .send(|| self.context.http.post(self.url.clone()).json(&body))
            .await?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(self.parse_error(status.as_u16(), &response.bytes().await.unwrap_or_default()))
        }
    }

    /// Maps an error answer (`{"error":{"code","message"}}`, or any text) to an [`Error`].
    fn parse_error(&self, status: u16, body: &[u8]) -> Error {
        let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let message = json["error"]["message"]
            .as_str()
            .or(json["message"].as_str())
            .unwrap_or("");
        let mut e = Error::new(
            kind_for_status(status),
            format!(
                "application API {} answered HTTP {status}{}{message}",
                self.label,
                if message.is_empty() { "" } else { ": " }
            ),
        )
        .with_status(status);
        if let Some(code) = json["error"]["code"].as_str() {
            e = e.with_service_code(code);
        }
        e
    }
}

#[async_trait::async_trait]
impl Container for ApplicationApi {
    fn target_type(&self) -> TargetType {
        TYPE
    }

    fn label(&self) -> &str {
        &self.label
    }

    async fn read(&self, names: &[String]) -> Vec<Result<Stored>> {
        crate::fan_out::bounded(
            self.context.call.fan_out(),
            names.iter().map(|n| self.read_one(n)),
        )
        .await
    }

    async fn write(&self, writes: &[Write]) -> Vec<Result<()>> {
        crate::fan_out::bounded(
            self.context.call.fan_out(),
            writes.iter().map(|w| self.write_one(w)),
        )
        .await
    }
}
