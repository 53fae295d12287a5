//! Targets: the places consumer apps read keys from, one folder per kind.
//!
//! A target kind is a *container* of entries (a vault of secrets, an application API of app
//! names, later a site's app settings), read and written in batches because some containers
//! must be read once and written once. Every kind passes the conformance suite in `tests/`.

pub mod application_api;
pub mod key_vault;

use crate::azure::cloud::Cloud;
use crate::error::Result;
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
}

impl TargetKind {
    /// The report's `type` value.
    pub fn report_type(self) -> &'static str {
        match self {
            TargetKind::KeyVault => "KEY_VAULT",
            TargetKind::ApplicationApi => "APPLICATION_API",
        }
    }

    /// How the report names a container of this kind in messages.
    pub fn noun(self) -> &'static str {
        match self {
            TargetKind::KeyVault => "Key Vault",
            TargetKind::ApplicationApi => "application API",
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
}

impl Stored {
    /// Whether what is stored is `key`.
    pub fn holds(&self, key: &ApiKey) -> bool {
        match self {
            Stored::Missing => false,
            Stored::Value(v) => v == key,
            Stored::Fingerprint(f) => f.eq_ignore_ascii_case(&key.sha256_hex()),
        }
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
    pub vaults: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<key_vault::KeyVault>>>>,
}

/// Builds one container per vault and per application API endpoint (URL and auth) named in
/// the mapping, each with its entries.
pub fn plan(mapping: &AppsMapping, deps: &TargetDeps) -> Result<Vec<Planned>> {
    let mut out = Vec::new();
    for group in &mapping.key_vault {
        let container = {
            let mut vaults = deps.vaults.lock().unwrap_or_else(|p| p.into_inner());
            match vaults.get(group.vault_url.as_str()) {
                Some(vault) => vault.clone(),
                None => {
                    let vault = Arc::new(key_vault::KeyVault::new(
                        &group.vault_url,
                        &group.vault_label,
                        deps,
                    )?);
                    vaults.insert(group.vault_url.to_string(), vault.clone());
                    vault
                }
            }
        };
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
    Ok(out)
}
