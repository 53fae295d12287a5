//! Azure App Configuration key-values, over the data-plane REST API (there is no official Rust
//! SDK) on the shared HTTP client: get and put by key and label, with ETags for optimistic
//! concurrency, Sync-Tokens carried between calls, and Entra ID or HMAC authentication.
//!
//! One container per store endpoint and authentication; its entries are key-values named by
//! [`entry_name`] (the key, with `?label=` when the label is not null).

//!
//! The folder owns the kind whole: its mapping section (`mapping.rs`, `schema.json`), its
//! planner ([`KIND`]), its client ([`AppConfiguration`], with `auth.rs`) and its service's
//! errors (`error.rs`).

pub mod auth;
mod error;
mod mapping;

pub use auth::{audience, AccessKey};
pub use error::parse_error;
pub use mapping::{AppConfigurationStore, KeyValueMapping};

use super::{
    Container, Entry, Kind, PlannedContainer, Remedies, SecretRef, Stored, TargetContext,
    TargetType, Write,
};
use crate::azure::credential::bearer;
use crate::azure::retry::{self, Idempotency};
use crate::error::{Error, ErrorKind, Result};
use crate::mapping::walk::{Walked, Walker};
use crate::mapping::AppsMapping;
use crate::secret::ApiKey;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// The report's type of a store.
pub const TYPE: TargetType = TargetType::new("APP_CONFIG", "App Configuration", "key-value", true)
.with_remedies(Remedies {
    forbidden: Some("grant the rotator's identity App Configuration Data Owner on the store, or use connectionStringSetting with a read-write key"),
    not_found: Some("check the store's endpoint in the mapping"),
    unauthenticated: None,
});

/// The App Configuration kind: the `appConfiguration` section, one container per store endpoint
/// and authentication, however many entries name it.
pub struct AppConfigurationKind;

/// The kind, for the registry.
pub static KIND: AppConfigurationKind = AppConfigurationKind;

impl Kind for AppConfigurationKind {
    fn sections(&self) -> &'static [&'static str] {
        &["appConfiguration"]
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
    ) -> crate::error::Result<Vec<PlannedContainer>> {
        // (endpoint, auth, (key, label) pairs, entries) of each store.
        type Store = (
            url::Url,
            StoreAuth,
            Vec<(String, Option<String>)>,
            Vec<Entry>,
        );
        let mut stores: Vec<Store> = Vec::new();
        for store in mapping.groups::<AppConfigurationStore>() {
            let auth = match &store.connection_string_setting {
                None => StoreAuth::Entra,
                Some(setting) => StoreAuth::ConnectionString {
                    setting: setting.clone(),
                },
            };
            let at = match stores
                .iter()
                .position(|(e, a, _, _)| e == &store.endpoint && a == &auth)
            {
                Some(i) => i,
                None => {
                    stores.push((store.endpoint.clone(), auth, Vec::new(), Vec::new()));
                    stores.len() - 1
                }
            };
            for kv in &store.keys {
                stores[at].2.push((kv.key.clone(), kv.label.clone()));
                stores[at].3.push(Entry {
                    name: entry_name(&kv.key, kv.label.as_deref()),
                    apim_app_name: kv.apim_app_name.clone(),
                });
            }
        }
        Ok(stores
            .into_iter()
            .map(|(endpoint, auth, keys, entries)| PlannedContainer {
                container: Arc::new(AppConfiguration::new(&endpoint, auth, &keys, context)),
                entries,
            })
            .collect())
    }
}

/// The api-version every request pins.
pub const API_VERSION: &str = "2023-11-01";
/// The media type of one key-value.
pub const KV_MEDIA_TYPE: &str = "application/vnd.microsoft.appconfig.kv+json";
/// The content type of a key-value that refers to a Key Vault secret.
pub const KEY_VAULT_REF_CONTENT_TYPE: &str =
    "application/vnd.microsoft.appconfig.keyvaultref+json;charset=utf-8";

/// The entry name of the key-value `key` with `label` (`None`: the null label).
pub fn entry_name(key: &str, label: Option<&str>) -> String {
    match label {
        Some(l) => format!("{key}?label={l}"),
        None => key.to_string(),
    }
}

/// How the rotator authenticates to a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreAuth {
    /// A bearer token of the rotator's identity (App Configuration Data Owner).
    Entra,
    /// HMAC with the connection string held in the named app setting.
    ConnectionString {
        /// The app setting's name.
        setting: String,
    },
}

/// What a read saw of a key-value, so the write can be conditional and keep its metadata.
#[derive(Clone, Default)]
struct Seen {
    /// `None` when the key-value was missing.
    etag: Option<String>,
    content_type: Option<String>,
    tags: Option<serde_json::Value>,
}

/// A key-value as the service returns it.
#[derive(serde::Deserialize)]
struct KeyValue {
    #[serde(default)]
    etag: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    tags: Option<serde_json::Value>,
}

/// One App Configuration store.
pub struct AppConfiguration {
    endpoint: url::Url,
    label: String,
    auth: StoreAuth,
    /// The access key, or why there is none (parsed once; reported on every call).
    access_key: Option<Result<AccessKey>>,
    context: TargetContext,
    /// Entry name to (key, label), for the entries the mapping names.
    names: HashMap<String, (String, Option<String>)>,
    seen: Mutex<HashMap<String, Seen>>,
    /// Sync-Token id to (value, sequence number): the highest seen of each.
    sync_tokens: Mutex<BTreeMap<String, (String, u64)>>,
}

impl AppConfiguration {
    /// A client for the store at `endpoint` with `auth`; `keys` are the (key, label) pairs the
    /// mapping names in it.
    pub fn new(
        endpoint: &url::Url,
        auth: StoreAuth,
        keys: &[(String, Option<String>)],
        context: &TargetContext,
    ) -> Self {
        let label = match (endpoint.host(), endpoint.port()) {
            (Some(url::Host::Domain(d)), _) if d.contains('.') => {
                d.split('.').next().unwrap_or(d).to_string()
            }
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (h, _) => h.map(|h| h.to_string()).unwrap_or_default(),
        };
        let access_key = match &auth {
            StoreAuth::Entra => None,
            StoreAuth::ConnectionString { setting } => Some(
                match context.settings.get(setting) {
                    None => Err(Error::config(format!(
                        "App Configuration {label}: app setting {setting} (connection string) is not set"
                    ))),
                    Some(cs) => AccessKey::parse(cs)
                        .map_err(|e| {
                            Error::config(format!(
                                "App Configuration {label}: app setting {setting}: {}",
                                e.message()
                            ))
                        })
                        .and_then(|k| {
                            if same_origin(&k.endpoint, endpoint) {
                                Ok(k)
                            } else {
                                Err(Error::config(format!(
                                    "App Configuration {label}: app setting {setting} holds the connection string of another store ({})",
                                    k.endpoint
                                )))
                            }
                        }),
                },
            ),
        };
        Self {
            endpoint: endpoint.clone(),
            label,
            auth,
            access_key,
            context: context.clone(),
            names: keys
                .iter()
                .map(|(k, l)| (entry_name(k, l.as_deref()), (k.clone(), l.clone())))
                .collect(),
            seen: Mutex::new(HashMap::new()),
            sync_tokens: Mutex::new(BTreeMap::new()),
        }
    }

    /// Whether this container is the store at `endpoint` with `auth`.
    pub fn serves(&self, endpoint: &url::Url, auth: &StoreAuth) -> bool {
        &self.endpoint == endpoint && &self.auth == auth
    }

    /// The key and label of entry `name` (a name the mapping did not give is a key with the
    /// null label).
    fn key_label(&self, name: &str) -> (String, Option<String>) {
        self.names
            .get(name)
            .cloned()
            .unwrap_or_else(|| (name.to_string(), None))
    }

    fn kv_url(&self, key: &str, label: Option<&str>) -> url::Url {
        let mut url = self.endpoint.clone();
        url.set_query(None);
        url.path_segments_mut()
            .expect("https URLs have paths")
            .pop_if_empty()
            .push("kv")
            .push(key);
        {
            let mut q = url.query_pairs_mut();
            if let Some(l) = label {
                q.append_pair("label", l);
            }
            q.append_pair("api-version", API_VERSION);
        }
        url
    }

    /// The `Sync-Token` header to send: every known id with its latest value.
    fn sync_token_header(&self) -> Option<String> {
        let tokens = self.sync_tokens.lock().unwrap_or_else(|p| p.into_inner());
        (!tokens.is_empty()).then(|| {
            tokens
                .iter()
                .map(|(id, (value, _))| format!("{id}={value}"))
                .collect::<Vec<_>>()
                .join(",")
        })
    }

    /// Remembers the `Sync-Token` headers of a response, keeping the highest `sn` per id.
    fn remember_sync_tokens(&self, headers: &reqwest::header::HeaderMap) {
        let mut tokens = self.sync_tokens.lock().unwrap_or_else(|p| p.into_inner());
        for header in headers.get_all("sync-token") {
            for (id, value, sn) in header.to_str().ok().into_iter().flat_map(parse_sync_tokens) {
                match tokens.get(&id) {
                    Some((_, known)) if *known > sn => {}
                    _ => {
                        tokens.insert(id, (value, sn));
                    }
                }
            }
        }
    }

    /// Sends `method url` with `body` and `extra` headers, authenticated and with the
    /// Sync-Token, under the shared retry policy (GETs and conditional PUTs are idempotent),
    /// and remembers the answer's Sync-Token.
    async fn send(
        &self,
        method: reqwest::Method,
        url: url::Url,
        body: Option<Vec<u8>>,
        extra: &[(&'static str, String)],
    ) -> Result<reqwest::Response> {
        let body = body.unwrap_or_default();
        let service = format!("App Configuration {}", self.label);
        let response = retry::send(
            &self.context.call,
            &service,
            Idempotency::Idempotent,
            || self.request(method.clone(), url.clone(), body.clone(), extra),
        )
        .await?;
        self.remember_sync_tokens(response.headers());
        Ok(response)
    }

    /// One attempt's request: freshly signed (HMAC dates expire) or with a current token.
    async fn request(
        &self,
        method: reqwest::Method,
        url: url::Url,
        body_bytes: Vec<u8>,
        extra: &[(&'static str, String)],
    ) -> Result<reqwest::RequestBuilder> {
        let mut request = self
            .context
            .http
            .request(method.clone(), url.clone())
            .header(ACCEPT, KV_MEDIA_TYPE);
        for (k, v) in extra {
            request = request.header(*k, v.as_str());
        }
        if let Some(token) = self.sync_token_header() {
            request = request.header("sync-token", token);
        }
        match &self.access_key {
            None => {
                let token = bearer(
                    &self.context.call,
                    self.context.credential.as_ref(),
                    audience(&self.endpoint),
                )
                .await?;
                let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| Error::unexpected("the token is not a valid header value"))?;
                value.set_sensitive(true);
                request = request.header(AUTHORIZATION, value);
            }
            Some(Err(e)) => return Err(e.clone()),
            Some(Ok(key)) => {
                for (name, value) in
                    key.sign(method.as_str(), &url, &body_bytes, &auth::rfc1123_now())
                {
                    let mut value = HeaderValue::from_str(&value).map_err(|_| {
                        Error::unexpected("a signature header is not a valid header value")
                    })?;
                    value.set_sensitive(name == "authorization");
                    request = request.header(name, value);
                }
            }
        }
        if method == reqwest::Method::PUT {
            request = request.header(CONTENT_TYPE, KV_MEDIA_TYPE).body(body_bytes);
        }
        Ok(request)
    }

    async fn error_of(&self, response: reqwest::Response) -> Error {
        let status = response.status().as_u16();
        parse_error(
            status,
            &response.bytes().await.unwrap_or_default(),
            &self.label,
        )
    }

    /// `GET /kv/{key}?label=`: the key-value, or `None` when there is none.
    async fn get(&self, key: &str, label: Option<&str>) -> Result<Option<KeyValue>> {
        let response = self
            .send(reqwest::Method::GET, self.kv_url(key, label), None, &[])
            .await?;
        match response.status().as_u16() {
            200 => {
                let header_etag = etag_header(response.headers());
                let mut kv: KeyValue = response.json().await.map_err(|e| {
                    Error::unexpected(format!(
                        "App Configuration {}: unreadable key-value: {e}",
                        self.label
                    ))
                })?;
                kv.etag = kv.etag.or(header_etag);
                Ok(Some(kv))
            }
            404 => Ok(None),
            _ => Err(self.error_of(response).await),
        }
    }

    /// `PUT /kv/{key}?label=` conditioned on `etag` (`None`: only if it does not exist).
    /// `Ok(None)` when the condition failed (412); otherwise the new ETag.
    async fn put(
        &self,
        key: &str,
        label: Option<&str>,
        value: &ApiKey,
        seen: &Seen,
    ) -> Result<Option<Option<String>>> {
        let mut body = serde_json::json!({ "value": value.expose() });
        if let Some(ct) = &seen.content_type {
            body["content_type"] = serde_json::json!(ct);
        }
        if let Some(tags) = &seen.tags {
            body["tags"] = tags.clone();
        }
        let condition = match &seen.etag {
            Some(etag) => ("if-match", format!("\"{etag}\"")),
            None => ("if-none-match", "*".to_string()),
        };
        let body = serde_json::to_vec(&body).map_err(|e| Error::unexpected(e.to_string()))?;
        let response = self
            .send(
                reqwest::Method::PUT,
                self.kv_url(key, label),
                Some(body),
                &[condition],
            )
            .await?;
        match response.status().as_u16() {
            200 | 201 => {
                let etag = etag_header(response.headers());
                let body: Option<KeyValue> = response.json().await.ok();
                Ok(Some(body.and_then(|b| b.etag).or(etag)))
            }
            412 => Ok(None),
            _ => Err(self.error_of(response).await),
        }
    }

    async fn read_one(&self, name: &str) -> Result<Stored> {
        let (key, label) = self.key_label(name);
        let kv = self
            .get(&key, label.as_deref())
            .await
            .map_err(|e| e.with_context("key", name))?;
        let Some(kv) = kv else {
            self.remember(name, Seen::default());
            return Ok(Stored::Missing);
        };
        let stored = stored_of(&kv).map_err(|m| {
            Error::new(
                ErrorKind::Unexpected,
                format!("App Configuration {}: {m}", self.label),
            )
            .with_context("key", name)
        })?;
        self.remember(
            name,
            Seen {
                etag: kv.etag.clone(),
                content_type: kv.content_type.clone(),
                tags: kv.tags.clone(),
            },
        );
        Ok(stored)
    }

    fn remember(&self, name: &str, seen: Seen) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), seen);
    }

    async fn write_one(&self, write: &Write) -> Result<()> {
        let name = write.name.as_str();
        let (key, label) = self.key_label(name);
        let known = self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned();
        // A write without a read first still must not overwrite blindly.
        let seen = match known {
            Some(s) => s,
            None => {
                self.read_one(name).await?;
                self.seen_of(name)
            }
        };
        let context = |e: Error| e.with_context("key", name);
        if let Some(etag) = self
            .put(&key, label.as_deref(), &write.key, &seen)
            .await
            .map_err(context)?
        {
            self.remember(name, Seen { etag, ..seen });
            return Ok(());
        }
        // Changed since it was read: compare again, once.
        tracing::info!(store = %self.label, key = name, "key-value changed since it was read; reading it again");
        match self.read_one(name).await? {
            Stored::Value(v) if v == write.key => return Ok(()),
            Stored::KeyVaultReference(_) => {
                return Err(context(
                    Error::new(
                        ErrorKind::ConditionNotMatch,
                        format!(
                            "App Configuration {}: the key-value became a Key Vault reference while it was being updated; not overwritten",
                            self.label
                        ),
                    )
                    .with_status(412),
                ))
            }
            _ => {}
        }
        let seen = self.seen_of(name);
        match self
            .put(&key, label.as_deref(), &write.key, &seen)
            .await
            .map_err(context)?
        {
            Some(etag) => {
                self.remember(name, Seen { etag, ..seen });
                Ok(())
            }
            None => Err(context(
                Error::new(
                    ErrorKind::ConditionNotMatch,
                    format!(
                        "App Configuration {}: the key-value kept changing while it was being updated (HTTP 412 twice); not overwritten",
                        self.label
                    ),
                )
                .with_status(412),
            )),
        }
    }

    fn seen_of(&self, name: &str) -> Seen {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .unwrap_or_default()
    }
}

/// What a key-value holds: a Key Vault reference, or its value.
fn stored_of(kv: &KeyValue) -> std::result::Result<Stored, String> {
    let is_reference = kv.content_type.as_deref().is_some_and(|ct| {
        ct.to_ascii_lowercase()
            .starts_with("application/vnd.microsoft.appconfig.keyvaultref+json")
    });
    if is_reference {
        let uri = kv
            .value
            .as_deref()
            .and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok())
            .and_then(|v| v["uri"].as_str().map(str::to_string))
            .ok_or("a Key Vault reference without a {\"uri\": ...} value")?;
        return SecretRef::from_secret_uri(&uri)
            .map(Stored::KeyVaultReference)
            .ok_or_else(|| {
                format!("a Key Vault reference to {uri}, which is not a secret identifier")
            });
    }
    Ok(match &kv.value {
        Some(v) => Stored::Value(ApiKey::new(v.clone())),
        None => Stored::Missing,
    })
}

/// The unquoted value of an `ETag` header (`"x"` or `W/"x"`).
fn etag_header(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let v = headers.get(reqwest::header::ETAG)?.to_str().ok()?;
    Some(
        v.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_string(),
    )
}

/// Parses a `Sync-Token` header: comma-separated `<id>=<value>;sn=<sn>`.
fn parse_sync_tokens(header: &str) -> Vec<(String, String, u64)> {
    header
        .split(',')
        .filter_map(|token| {
            let mut parts = token.trim().split(';');
            let (id, value) = parts.next()?.split_once('=')?;
            let sn = parts
                .find_map(|p| p.trim().strip_prefix("sn="))
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            (!id.is_empty()).then(|| (id.to_string(), value.to_string(), sn))
        })
        .collect()
}

fn same_origin(a: &url::Url, b: &url::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str().map(str::to_ascii_lowercase) == b.host_str().map(str::to_ascii_lowercase)
        && a.port_or_known_default() == b.port_or_known_default()
}

#[async_trait::async_trait]
impl Container for AppConfiguration {
    fn target_type(&self) -> TargetType {
        TYPE
    }

    fn label(&self) -> &str {
        &self.label
    }

    async fn read(&self, names: &[String]) -> Vec<Result<Stored>> {
        // Each request carries the Sync-Tokens known when it starts, as the SDKs' concurrent
        // requests do; reads of different keys need nothing from each other.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_tokens_parse() {
        assert_eq!(
            parse_sync_tokens("zAJw6V16=NjotMSM3ODk3NjM=;sn=789763"),
            [(
                "zAJw6V16".to_string(),
                "NjotMSM3ODk3NjM=".to_string(),
                789763
            )]
        );
        assert_eq!(parse_sync_tokens("a=x;sn=2, b=y=;sn=5,junk").len(), 2);
    }

    #[test]
    fn key_vault_references_are_recognised() {
        let path = format!(
            "{}/tests/fixtures/reference/azure/appconfig/PutKeyValue_KeyVaultReference_recorded.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let kv: KeyValue = serde_json::from_value(doc["responses"]["200"]["body"].clone()).unwrap();
        match stored_of(&kv).unwrap() {
            Stored::KeyVaultReference(r) => {
                assert_eq!(r.vault_url.as_str(), "https://vault_name.vault.azure.net/");
                assert_eq!(r.secret_name, "name-2161727073431701823");
            }
            other => panic!("{other:?}"),
        }
        let plain: KeyValue =
            serde_json::from_value(serde_json::json!({"value": "k", "content_type": null}))
                .unwrap();
        assert_eq!(stored_of(&plain).unwrap(), Stored::Value(ApiKey::new("k")));
        let broken: KeyValue = serde_json::from_value(
            serde_json::json!({"value": "nope", "content_type": KEY_VAULT_REF_CONTENT_TYPE}),
        )
        .unwrap();
        assert!(stored_of(&broken).is_err());
    }

    #[test]
    fn etags_are_unquoted() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            reqwest::header::ETAG,
            HeaderValue::from_static("W/\"7XpB48\""),
        );
        assert_eq!(etag_header(&h).as_deref(), Some("7XpB48"));
    }

    #[test]
    fn entry_names() {
        assert_eq!(entry_name("a:b", None), "a:b");
        assert_eq!(entry_name("a", Some("prd")), "a?label=prd");
    }
}
