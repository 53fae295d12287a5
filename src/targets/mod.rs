//! Targets: the places consumer apps read keys from, one folder per kind.
//!
//! A target kind is a *container* of entries (a vault of secrets, an application API of app
//! names, later a site's app settings), read and written in batches because some containers
//! must be read once and written once. Every kind passes the conformance suite in `tests/`.

pub mod app_configuration;
pub mod app_settings;
pub mod application_api;
pub mod key_vault;

use crate::azure::cloud::Cloud;
use crate::error::{Error, ErrorKind, Result};
use crate::mapping::AppsMapping;
use crate::secret::ApiKey;
use crate::settings::Settings;
use azure_core::credentials::TokenCredential;
use std::sync::Arc;
use time::OffsetDateTime;

/// The kinds of target, as named in the report's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    /// A Key Vault secret.
    KeyVault,
    /// A consumer application's own HTTP API.
    ApplicationApi,
    /// An app setting of a Function App (or one of its slots).
    FunctionApp,
    /// An app setting of a Web App (or one of its slots).
    WebApp,
    /// An app setting of a Static Web App.
    StaticWebApp,
    /// An App Configuration key-value.
    AppConfiguration,
}

impl TargetKind {
    /// The report's `type` value.
    pub fn report_type(self) -> &'static str {
        match self {
            TargetKind::KeyVault => "KEY_VAULT",
            TargetKind::ApplicationApi => "APPLICATION_API",
            TargetKind::FunctionApp => "FUNCTION_APP",
            TargetKind::WebApp => "WEB_APP",
            TargetKind::StaticWebApp => "STATIC_WEB_APP",
            TargetKind::AppConfiguration => "APP_CONFIG",
        }
    }

    /// How the report names a container of this kind in messages.
    pub fn noun(self) -> &'static str {
        match self {
            TargetKind::KeyVault => "Key Vault",
            TargetKind::ApplicationApi => "application API",
            TargetKind::FunctionApp => "Function App",
            TargetKind::WebApp => "Web App",
            TargetKind::StaticWebApp => "Static Web App",
            TargetKind::AppConfiguration => "App Configuration",
        }
    }
}

/// What an entry holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Nothing is stored under the entry's name.
    Missing,
    /// The stored key.
    Value(ApiKey),
    /// Only a SHA-256 fingerprint of the stored key is readable (application APIs).
    Fingerprint(String),
    /// The entry refers to a Key Vault secret (an App Service `@Microsoft.KeyVault(...)`
    /// setting, an App Configuration Key Vault reference): the secret is what gets rotated,
    /// and the entry itself must never be overwritten with a plain value.
    KeyVaultReference(SecretRef),
}

impl Stored {
    /// Whether what is stored is `key` (never true for a reference: the referenced secret is
    /// compared instead).
    pub fn holds(&self, key: &ApiKey) -> bool {
        match self {
            Stored::Missing | Stored::KeyVaultReference(_) => false,
            Stored::Value(v) => v == key,
            Stored::Fingerprint(f) => f.eq_ignore_ascii_case(&key.sha256_hex()),
        }
    }
}

/// A Key Vault secret referred to by another target's entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// The vault's base URL (ending in `/`).
    pub vault_url: url::Url,
    /// The secret's name.
    pub secret_name: String,
    /// A pinned version, if the reference names one (a new version would not be seen).
    pub version: Option<String>,
}

impl SecretRef {
    /// Parses a secret identifier `https://{vault}/secrets/{name}[/{version}]`.
    pub fn from_secret_uri(uri: &str) -> Option<Self> {
        let url = url::Url::parse(uri.trim()).ok()?;
        let mut segments = url.path_segments()?.filter(|s| !s.is_empty());
        if segments.next()? != "secrets" {
            return None;
        }
        let secret_name = segments.next()?.to_string();
        let version = segments.next().map(str::to_string);
        if segments.next().is_some() {
            return None;
        }
        let mut vault_url = url.clone();
        vault_url.set_path("/");
        vault_url.set_query(None);
        Some(Self {
            vault_url,
            secret_name,
            version,
        })
    }
}

/// One write: the entry's name and the key to store there.
#[derive(Debug, Clone)]
pub struct Write {
    /// The entry's name in its container (secret name, app name).
    pub name: String,
    /// The API-manager app the key belongs to.
    pub apim_app_name: String,
    /// The key to store.
    pub key: ApiKey,
    /// When the key expires, if it does.
    pub expires_at: Option<OffsetDateTime>,
}

/// A container of entries of one kind.
#[async_trait::async_trait]
pub trait Container: Send + Sync {
    /// The kind, for the report.
    fn kind(&self) -> TargetKind;

    /// The container's display name (vault name, API URL).
    fn name(&self) -> &str;

    /// Reads the entries named `names`: one result per name, in order. A missing entry is
    /// `Ok(Stored::Missing)`, never an error; a failure of the whole container is returned
    /// for every name.
    async fn read(&self, names: &[String]) -> Vec<Result<Stored>>;

    /// Writes `writes` (the caller passes only entries that differ): one result per write,
    /// in order. Must not change entries that are not named.
    async fn write(&self, writes: &[Write]) -> Vec<Result<()>>;

    /// Called once after the Key Vault secrets that entries `names` refer to were updated,
    /// so the container can make its consumers see them (a site refreshes its Key Vault
    /// references). Nothing by default.
    async fn references_updated(&self, names: &[String]) -> Result<()> {
        let _ = names;
        Ok(())
    }
}

/// Finds the Key Vault container for a vault URL, for following references.
pub trait VaultResolver: Send + Sync {
    /// The container of the vault at `vault_url`.
    fn vault(&self, vault_url: &url::Url) -> Result<Arc<dyn Container>>;
}

/// One mapped entry of a container: its name and the API-manager app whose key it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry's name in its container.
    pub name: String,
    /// The API-manager app.
    pub apim_app_name: String,
}

/// A container with the entries the mapping names in it.
pub struct Planned {
    /// The container.
    pub container: Arc<dyn Container>,
    /// Its mapped entries.
    pub entries: Vec<Entry>,
}

/// What the targets need to reach their services.
#[derive(Clone)]
pub struct TargetDeps {
    /// The shared HTTP client.
    pub http: reqwest::Client,
    /// The Azure credential.
    pub credential: Arc<dyn TokenCredential>,
    /// The cloud.
    pub cloud: Cloud,
    /// The app settings (header values of application APIs).
    pub settings: Arc<Settings>,
    /// Vault clients kept across runs, so each vault's authentication challenge is answered
    /// once per process rather than once per run.
    pub vaults: key_vault::VaultClients,
    /// The run's retry policy and deadline, which every request of the targets follows.
    pub call: crate::azure::call::Call,
}

impl TargetDeps {
    /// The vault at `vault_url` for this run: its client is made once per process and then
    /// shared; its requests follow this run's call.
    pub fn key_vault(&self, vault_url: &url::Url, label: &str) -> Result<Arc<key_vault::KeyVault>> {
        // The mapping's vaults are checked when it is validated; this also covers the vaults
        // that Key Vault references in a consumer's settings point to.
        if !self.cloud.is_key_vault(vault_url) {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "{} is not a vault of the {} cloud (expected a host under {}); the rotator sends its Key Vault token only to the cloud's vaults",
                    vault_url.host_str().unwrap_or_default(),
                    self.cloud.name,
                    self.cloud.key_vault_suffix
                ),
            )
            .with_code("VaultOutsideCloud"));
        }
        let client = self.vaults.client(vault_url, label, self)?;
        Ok(Arc::new(key_vault::KeyVault::new(
            client,
            self.call.clone(),
        )))
    }
}

impl VaultResolver for TargetDeps {
    fn vault(&self, vault_url: &url::Url) -> Result<Arc<dyn Container>> {
        Ok(self.key_vault(vault_url, &crate::mapping::vault_label(vault_url))?)
    }
}

/// Builds one container per vault, per application API endpoint (URL and auth) and per site,
/// slot or static site named in the mapping, each with its entries.
pub fn plan(mapping: &AppsMapping, deps: &TargetDeps) -> Result<Vec<Planned>> {
    let mut out = Vec::new();
    for group in &mapping.key_vault {
        let container: Arc<dyn Container> = deps.key_vault(&group.vault_url, &group.vault_label)?;
        let entries = group
            .secrets
            .iter()
            .map(|s| Entry {
                name: s.secret_name.clone(),
                apim_app_name: s.apim_app_name.clone(),
            })
            .collect();
        out.push(Planned { container, entries });
    }
    let mut apis: Vec<(application_api::ApplicationApi, Vec<Entry>)> = Vec::new();
    for api in &mapping.application_apis {
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
                application_api::ApplicationApi::new(&api.http_url, api.auth.clone(), deps),
                vec![entry],
            )),
        }
    }
    out.extend(apis.into_iter().map(|(c, entries)| Planned {
        container: Arc::new(c),
        entries,
    }));
    // One container per site, slot or static site, however many groups name it, so its
    // settings are listed once and written with one PUT; its kind is the first group's.
    let mut sites: Vec<(app_settings::AppSettings, Vec<Entry>)> = Vec::new();
    for group in &mapping.app_settings {
        let entries = group.settings.iter().map(|s| Entry {
            name: s.setting_name.clone(),
            apim_app_name: s.apim_app_name.clone(),
        });
        match sites.iter_mut().find(|(c, _)| c.serves(group)) {
            Some((_, known)) => known.extend(entries),
            None => {
                let kind = app_settings::target_kind(group.kind);
                let site = app_settings::AppSettings::new(group, kind, deps)?;
                sites.push((site, entries.collect()));
            }
        }
    }
    out.extend(sites.into_iter().map(|(c, entries)| Planned {
        container: Arc::new(c),
        entries,
    }));
    out.extend(plan_app_configuration(mapping, deps));
    Ok(out)
}

/// One container per App Configuration endpoint and authentication, with its key-values.
fn plan_app_configuration(mapping: &AppsMapping, deps: &TargetDeps) -> Vec<Planned> {
    use app_configuration::{entry_name, AppConfiguration, StoreAuth};
    // (endpoint, auth, (key, label) pairs, entries) of each store.
    type Store = (
        url::Url,
        StoreAuth,
        Vec<(String, Option<String>)>,
        Vec<Entry>,
    );
    let mut stores: Vec<Store> = Vec::new();
    for store in &mapping.app_configuration {
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
    stores
        .into_iter()
        .map(|(endpoint, auth, keys, entries)| Planned {
            container: Arc::new(AppConfiguration::new(&endpoint, auth, &keys, deps)),
            entries,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_uris() {
        let r =
            SecretRef::from_secret_uri("https://kv1.vault.azure.net/secrets/orders-key/").unwrap();
        assert_eq!(
            (r.vault_url.as_str(), r.secret_name.as_str(), r.version),
            ("https://kv1.vault.azure.net/", "orders-key", None)
        );
        let r = SecretRef::from_secret_uri("https://127.0.0.1:9443/secrets/a/0123abcd").unwrap();
        assert_eq!(
            (r.vault_url.as_str(), r.version.as_deref()),
            ("https://127.0.0.1:9443/", Some("0123abcd"))
        );
        assert!(SecretRef::from_secret_uri("https://kv1.vault.azure.net/keys/a").is_none());
        assert!(SecretRef::from_secret_uri("https://kv1.vault.azure.net/secrets/a/b/c").is_none());
        assert!(SecretRef::from_secret_uri("not a url").is_none());
    }

    #[test]
    fn references_never_hold_a_key() {
        let r = SecretRef::from_secret_uri("https://kv1.vault.azure.net/secrets/a").unwrap();
        assert!(!Stored::KeyVaultReference(r).holds(&ApiKey::new("x")));
    }
}
