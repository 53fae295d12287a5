//! App settings of Function Apps, Web Apps (and their deployment slots) and Static Web Apps,
//! through Azure Resource Manager (Microsoft.Web).
//!
//! A site's settings are one container: [`Container::read`] is one `list` call, and
//! [`Container::write`], under a process-wide lock per site, merges the changed settings into
//! that listed set and replaces the whole set with one `PUT` (which restarts the site), only
//! when something differs. The lock also counts this process's PUTs to the site: when another
//! writer in the process has replaced the set since it was listed, the write lists it again
//! first, so no update is lost and an unshared site costs one list and at most one PUT. Settings the mapping does not name are sent back as they
//! were listed. Settings holding a Key Vault reference are read as
//! [`Stored::KeyVaultReference`]; the engine rotates the secret and calls
//! [`Container::references_updated`], which asks the site to refresh its references.

//!
//! The folder owns the kind whole: its mapping sections (`mapping.rs`, `schema.json`), its
//! planner ([`KIND`]), its client ([`AppSettings`]), its service's errors (`error.rs`) and the
//! reading of Key Vault references (`reference.rs`).

mod error;
mod mapping;
mod reference;

pub use error::parse_error;
pub use mapping::{SettingMapping, SiteGroup, SiteSection};
pub use reference::{parse as parse_reference, Parsed};

use super::{
    Container, Entry, Kind, PlannedContainer, Remedies, Stored, TargetContext, TargetType, Write,
};
use crate::azure::credential::bearer;
use crate::azure::http::transport_error;
use crate::azure::retry::{self, Idempotency};
use crate::error::{Error, ErrorKind, Result};
use crate::mapping::walk::{Walked, Walker};
use crate::mapping::AppsMapping;
use crate::secret::ApiKey;
use reqwest::Method;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

/// One read-modify-write at a time per site, in the whole process (keyed by the resource URL);
/// the guarded number counts the PUTs this process made to the site.
static SITE_LOCKS: LazyLock<Mutex<HashMap<String, SiteLock>>> = LazyLock::new(Default::default);

type SiteLock = Arc<tokio::sync::Mutex<u64>>;

fn site_lock(key: &str) -> SiteLock {
    let mut locks = SITE_LOCKS.lock().unwrap_or_else(|p| p.into_inner());
    locks.entry(key.to_ascii_lowercase()).or_default().clone()
}

/// What the report advises for a site's failures (every site type needs the same role).
const SITE_REMEDIES: Remedies = Remedies {
    forbidden: Some("grant the rotator's identity Website Contributor on the site (or a role with .../config/list/action and .../config/write)"),
    not_found: Some("check subscriptionId, resourceGroup, name and slot in the mapping"),
    unauthenticated: None,
};
/// The report's type of a Function App's settings.
pub const FUNCTION_APP: TargetType =
    TargetType::new("FUNCTION_APP", "Function App", "app setting", false)
        .with_remedies(SITE_REMEDIES);
/// The report's type of a Web App's settings.
pub const WEB_APP: TargetType =
    TargetType::new("WEB_APP", "Web App", "app setting", false).with_remedies(SITE_REMEDIES);
/// The report's type of a Static Web App's settings.
pub const STATIC_WEB_APP: TargetType =
    TargetType::new("STATIC_WEB_APP", "Static Web App", "app setting", false)
        .with_remedies(SITE_REMEDIES);

/// The report's type of the settings of a section's sites.
pub fn target_type(section: SiteSection) -> TargetType {
    match section {
        SiteSection::FunctionApp => FUNCTION_APP,
        SiteSection::WebApp => WEB_APP,
        SiteSection::StaticWebApp => STATIC_WEB_APP,
    }
}

/// The app settings kind: the `functionApps`, `webApps` and `staticWebApps` sections, one
/// container per site, slot or static site.
pub struct AppSettingsKind;

/// The kind, for the registry.
pub static KIND: AppSettingsKind = AppSettingsKind;

impl Kind for AppSettingsKind {
    fn sections(&self) -> &'static [&'static str] {
        &["functionApps", "webApps", "staticWebApps"]
    }

    fn types(&self) -> &'static [TargetType] {
        &[FUNCTION_APP, WEB_APP, STATIC_WEB_APP]
    }

    fn read(
        &self,
        section: &str,
        entry: &Value,
        path: &str,
        walker: &mut Walker,
    ) -> Option<Walked> {
        mapping::read(walker, section, entry, path)
    }

    fn schema(&self) -> &'static str {
        include_str!("schema.json")
    }

    /// One container per site, slot or static site, however many groups name it, so its
    /// settings are listed once and written with one PUT; its type is the first group's.
    fn plan(
        &self,
        mapping: &AppsMapping,
        context: &TargetContext,
    ) -> Result<Vec<PlannedContainer>> {
        let mut sites: Vec<(AppSettings, Vec<Entry>)> = Vec::new();
        for group in mapping.groups::<SiteGroup>() {
            let entries = group.settings.iter().map(|s| Entry {
                name: s.setting_name.clone(),
                apim_app_name: s.apim_app_name.clone(),
            });
            match sites.iter_mut().find(|(c, _)| c.serves(group)) {
                Some((_, known)) => known.extend(entries),
                None => {
                    let site = AppSettings::new(group, target_type(group.section), context)?;
                    sites.push((site, entries.collect()));
                }
            }
        }
        Ok(sites
            .into_iter()
            .map(|(c, entries)| PlannedContainer {
                container: Arc::new(c),
                entries,
            })
            .collect())
    }
}

/// The app settings of one site, deployment slot or static site.
pub struct AppSettings {
    target_type: TargetType,
    label: String,
    static_site: bool,
    /// `{resource_manager}/subscriptions/.../sites/{name}[/slots/{slot}]` (or `staticSites`).
    resource: url::Url,
    scope: String,
    lock: SiteLock,
    /// The set as `read` listed it, with the site's PUT count at that time.
    listed: Mutex<Option<(u64, Map<String, Value>)>>,
    context: TargetContext,
}

impl AppSettings {
    /// The container of `group`'s site, reported as `target_type`.
    pub fn new(
        group: &SiteGroup,
        target_type: TargetType,
        context: &TargetContext,
    ) -> Result<Self> {
        let base = context.cloud.resource_manager.trim_end_matches('/');
        let mut resource = url::Url::parse(base).map_err(|e| {
            Error::config(format!(
                "the Resource Manager endpoint {base} is not a URL ({e})"
            ))
        })?;
        {
            let mut segments = resource
                .path_segments_mut()
                .map_err(|_| Error::config("the Resource Manager endpoint cannot have paths"))?;
            segments.pop_if_empty().extend(group.resource_path());
        }
        Ok(Self {
            target_type,
            label: group.label(),
            static_site: group.section == SiteSection::StaticWebApp,
            lock: site_lock(resource.as_str()),
            listed: Mutex::new(None),
            resource,
            scope: format!("{base}/.default"),
            context: context.clone(),
        })
    }

    /// Whether this container is the site of `group` (same subscription, group, name, slot).
    pub fn serves(&self, group: &SiteGroup) -> bool {
        Self::new(group, self.target_type, &self.context).is_ok_and(|other| {
            other
                .resource
                .as_str()
                .eq_ignore_ascii_case(self.resource.as_str())
        })
    }

    /// How messages name the site (`Function App func-orders/staging`).
    fn describe(&self) -> String {
        format!("{} {}", self.target_type.noun(), self.label)
    }

    fn url(&self, tail: &[&str]) -> url::Url {
        let mut url = self.resource.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.extend(tail);
        }
        url.query_pairs_mut()
            .append_pair("api-version", &self.context.cloud.web_api_version);
        url
    }

    /// One ARM call under the shared retry policy (throttling hints honoured), repeated
    /// blindly only when `idempotency` allows.
    async fn call(
        &self,
        method: Method,
        url: url::Url,
        body: Option<&Value>,
        idempotency: Idempotency,
    ) -> Result<Value> {
        let response = retry::send(
            &self.context.call,
            &self.describe(),
            idempotency,
            || async {
                let token = bearer(
                    &self.context.call,
                    self.context.credential.as_ref(),
                    &self.scope,
                )
                .await?;
                let request = self
                    .context
                    .http
                    .request(method.clone(), url.clone())
                    .bearer_auth(token);
                Ok(match body {
                    Some(b) => request.json(b),
                    None => request.body(""),
                })
            },
        )
        .await?;
        let status = response.status().as_u16();
        log_rate_limits(response.headers(), &self.label);
        let hint = retry::retry_after(response.headers(), std::time::SystemTime::now());
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport_error(&self.describe(), &e))?;
        if (200..300).contains(&status) {
            if bytes.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&bytes).map_err(|e| {
                Error::unexpected(format!("{}: unreadable answer: {e}", self.describe()))
            });
        }
        Err(parse_error(status, &bytes, &self.describe()).with_retry_after(hint))
    }

    /// The current settings: one list call.
    async fn list(&self) -> Result<Map<String, Value>> {
        let tail: &[&str] = if self.static_site {
            &["listAppSettings"]
        } else {
            &["config", "appsettings", "list"]
        };
        let body = self
            .call(Method::POST, self.url(tail), None, Idempotency::Idempotent)
            .await?;
        match body.get("properties") {
            Some(Value::Object(p)) => Ok(p.clone()),
            None | Some(Value::Null) => Ok(Map::new()),
            Some(_) => Err(Error::unexpected(format!(
                "{}: the settings list has no properties object",
                self.describe()
            ))),
        }
    }

    /// Replaces the whole set with one PUT, which restarts the site, so it is not repeated
    /// blindly ([`retry::send_checked`]): after an unknown outcome the set is listed again, and
    /// the PUT is sent again only when it does not hold `sent`. A lost answer never restarts
    /// the site twice.
    async fn replace(&self, properties: Map<String, Value>, sent: &[&Write]) -> Result<()> {
        let body = serde_json::json!({ "properties": properties });
        let url = self.url(&["config", "appsettings"]);
        let put = || async {
            self.call(
                Method::PUT,
                url.clone(),
                Some(&body),
                Idempotency::NotIdempotent,
            )
            .await
            .map(|_| ())
        };
        let in_place = || async {
            let now = self.list().await?;
            Ok(sent.iter().all(|w| holds(&now, w)).then_some(()))
        };
        retry::send_checked(
            &self.context.call,
            &format!("the settings PUT of {}", self.describe()),
            put,
            in_place,
        )
        .await
    }

    fn stored(&self, name: &str, value: Option<&Value>) -> Result<Stored> {
        match value {
            None | Some(Value::Null) => Ok(Stored::Missing),
            Some(Value::String(s)) => match parse_reference(s, &self.context.cloud) {
                Parsed::Plain => Ok(Stored::Value(ApiKey::new(s.clone()))),
                Parsed::Reference(r) => Ok(Stored::KeyVaultReference(r)),
                Parsed::Malformed(why) => Err(Error::config(format!(
                    "{}: app setting {name} looks like a Key Vault reference but is not one ({why}); it is left as it is",
                    self.describe()
                ))
                .with_code("MalformedKeyVaultReference")),
            },
            Some(_) => Err(Error::unexpected(format!(
                "{}: app setting {name} is not a string",
                self.describe()
            ))),
        }
    }
}

/// Whether `properties` hold `write`'s key under its setting name.
fn holds(properties: &Map<String, Value>, write: &Write) -> bool {
    find(properties, &write.name)
        .and_then(|k| properties.get(k))
        .and_then(Value::as_str)
        == Some(write.key.expose())
}

/// The key under which `name` is stored: the exact name, else a case-insensitive match
/// (App Service treats setting names case-insensitively).
fn find<'a>(properties: &'a Map<String, Value>, name: &str) -> Option<&'a String> {
    properties
        .get_key_value(name)
        .map(|(k, _)| k)
        .or_else(|| properties.keys().find(|k| k.eq_ignore_ascii_case(name)))
}

fn log_rate_limits(headers: &reqwest::header::HeaderMap, label: &str) {
    for (name, value) in headers {
        if name.as_str().starts_with("x-ms-ratelimit-remaining-") {
            tracing::debug!(
                container = label,
                header = name.as_str(),
                remaining = value.to_str().unwrap_or(""),
                "Resource Manager rate limit"
            );
        }
    }
}

#[async_trait::async_trait]
impl Container for AppSettings {
    fn target_type(&self) -> TargetType {
        self.target_type
    }

    fn label(&self) -> &str {
        &self.label
    }

    async fn read(&self, names: &[String]) -> Vec<Result<Stored>> {
        // Taken before listing: a PUT that lands meanwhile makes `write` list again.
        let generation = *self.lock.lock().await;
        match self.list().await {
            Ok(properties) => {
                let stored = names
                    .iter()
                    .map(|n| self.stored(n, find(&properties, n).and_then(|k| properties.get(k))))
                    .collect();
                *self.listed.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((generation, properties));
                stored
            }
            Err(e) => names.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    async fn write(&self, writes: &[Write]) -> Vec<Result<()>> {
        let mut generation = self.lock.lock().await;
        let listed = self.listed.lock().unwrap_or_else(|p| p.into_inner()).take();
        let mut properties = match listed {
            Some((seen, properties)) if seen == *generation => properties,
            // Another writer replaced the set since it was listed: merging into the older
            // list would undo its update.
            _ => match self.list().await {
                Ok(p) => p,
                Err(e) => return writes.iter().map(|_| Err(e.clone())).collect(),
            },
        };
        let mut results = Vec::with_capacity(writes.len());
        let mut sent = Vec::new();
        for w in writes {
            let key = find(&properties, &w.name).cloned();
            let current = key.as_ref().and_then(|k| properties.get(k));
            results.push(match self.stored(&w.name, current) {
                Ok(Stored::KeyVaultReference(_)) => Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "{}: app setting {} became a Key Vault reference; it is not overwritten",
                        self.describe(),
                        w.name
                    ),
                )),
                Ok(Stored::Value(v)) if v == w.key => Ok(()),
                _ => {
                    properties.insert(
                        key.unwrap_or_else(|| w.name.clone()),
                        Value::String(w.key.expose().to_string()),
                    );
                    sent.push(w);
                    Ok(())
                }
            });
        }
        if !sent.is_empty() {
            if let Err(e) = self.replace(properties, &sent).await {
                return results.into_iter().map(|r| r.and(Err(e.clone()))).collect();
            }
            *generation += 1;
        }
        results
    }

    async fn references_updated(&self, names: &[String]) -> Result<()> {
        if self.static_site {
            // Static Web Apps have no reference refresh operation; they re-read on change.
            return Ok(());
        }
        tracing::info!(container = %self.label, settings = names.len(), "refreshing Key Vault references");
        let _guard = self.lock.lock().await;
        self.call(
            Method::POST,
            self.url(&["config", "configreferences", "appsettings", "refresh"]),
            None,
            Idempotency::Idempotent,
        )
        .await
        .map(|_| ())
    }
}
