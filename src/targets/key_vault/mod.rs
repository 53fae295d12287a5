//! Key Vault secrets, through the official `azure_security_keyvault_secrets` client.

//!
//! The folder owns the kind whole: its mapping section (`mapping.rs`, `schema.json`), its
//! planner ([`KIND`]), its client ([`KeyVault`]) and its service's errors (`error.rs`).

mod error;
mod mapping;

pub use error::{from_sdk, parse_error};
pub use mapping::{vault_label, KeyVaultGroup, SecretMapping};

use super::Entry;
use super::{
    Container, Kind, PlannedContainer, Remedies, Stored, TargetContext, TargetType, VaultResolver,
    Write,
};
use crate::azure::call::Call;
use crate::azure::credential::client_options;
use crate::azure::retry::SdkPolicy;
use crate::error::{Error, ErrorKind, Result};
use crate::mapping::walk::{Walked, Walker};
use crate::mapping::AppsMapping;
use crate::secret::ApiKey;
use azure_core::http::ClientMethodOptions;
use azure_security_keyvault_secrets::models::SetSecretParameters;
use azure_security_keyvault_secrets::models::{
    SecretClientGetSecretOptions, SecretClientSetSecretOptions,
};
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The report's type of a vault.
pub const TYPE: TargetType = TargetType::new("KEY_VAULT", "Key Vault", "secret", false)
.with_remedies(Remedies {
    forbidden: Some("grant the rotator's identity Key Vault Secrets Officer on the vault (access-policy vaults: secret Get and Set)"),
    not_found: Some("check vaultName / vaultUrl in the mapping"),
    unauthenticated: None,
});

/// The Key Vault kind: the `keyVault` section, one container per vault entry.
pub struct KeyVaultKind;

/// The kind, for the registry.
pub static KIND: KeyVaultKind = KeyVaultKind;

impl Kind for KeyVaultKind {
    fn sections(&self) -> &'static [&'static str] {
        &["keyVault"]
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
        mapping
            .groups::<KeyVaultGroup>()
            .iter()
            .map(|group| {
                let container: Arc<dyn Container> =
                    context.key_vault(&group.vault_url, &group.vault_label)?;
                let entries = group
                    .secrets
                    .iter()
                    .map(|s| Entry {
                        name: s.secret_name.clone(),
                        apim_app_name: s.apim_app_name.clone(),
                    })
                    .collect();
                Ok(PlannedContainer { container, entries })
            })
            .collect()
    }
}

impl TargetContext {
    /// The vault at `vault_url` for this run: its client is made once per process and then
    /// shared; its requests follow this run's call.
    pub fn key_vault(&self, vault_url: &url::Url, label: &str) -> Result<Arc<KeyVault>> {
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
        Ok(Arc::new(KeyVault::new(client, self.call.clone())))
    }
}

impl VaultResolver for TargetContext {
    fn vault(&self, vault_url: &url::Url) -> Result<Arc<dyn Container>> {
        Ok(self.key_vault(vault_url, &vault_label(vault_url))?)
    }
}

/// Content type and tags of a secret.
type SecretMeta = (Option<String>, HashMap<String, String>);

/// The vault clients of a process, one per vault URL, kept across runs.
#[derive(Clone, Default)]
pub struct VaultClients(Arc<Mutex<HashMap<String, Arc<VaultClient>>>>);

impl VaultClients {
    /// The client of the vault at `vault_url`, made on first use.
    pub fn client(
        &self,
        vault_url: &url::Url,
        label: &str,
        context: &TargetContext,
    ) -> Result<Arc<VaultClient>> {
        let mut clients = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(vault_url.as_str()) {
            return Ok(client.clone());
        }
        let client = Arc::new(VaultClient::new(vault_url, label, context)?);
        clients.insert(vault_url.to_string(), client.clone());
        Ok(client)
    }
}

/// One vault as a run uses it: the shared client, and the run's call, which each of its
/// requests carries (the client itself holds no policy).
pub struct KeyVault {
    client: Arc<VaultClient>,
    call: Call,
}

impl KeyVault {
    /// `client` under `call`.
    pub fn new(client: Arc<VaultClient>, call: Call) -> Self {
        Self { client, call }
    }
}

/// The client of one vault, shared by the runs of a process.
pub struct VaultClient {
    client: SecretClient,
    label: String,
    /// Content type and tags of each secret as read, so a new version keeps them.
    seen: Mutex<HashMap<String, SecretMeta>>,
    /// Whether a request has gone through the authentication challenge.
    primed: AtomicBool,
}

impl VaultClient {
    /// A client for the vault at `vault_url`, shown as `label` in reports.
    pub fn new(vault_url: &url::Url, label: &str, context: &TargetContext) -> Result<Self> {
        let options = SecretClientOptions {
            client_options: client_options(&context.http, &context.cloud, SdkPolicy::PerRequest),
            verify_challenge_resource: Some(context.cloud.verify_key_vault_challenge),
            ..Default::default()
        };
        let client = SecretClient::new(
            vault_url.as_str(),
            context.credential.clone(),
            Some(options),
        )
        .map_err(|e| Error::config(format!("Key Vault {label}: {e}")))?;
        Ok(Self {
            client,
            label: label.to_string(),
            seen: Mutex::new(HashMap::new()),
            primed: AtomicBool::new(false),
        })
    }

    async fn read_one(&self, call: &Call, name: &str) -> Result<Stored> {
        let options = SecretClientGetSecretOptions {
            method_options: ClientMethodOptions {
                context: call.sdk_context(),
            },
            ..Default::default()
        };
        match self.client.get_secret(name, Some(options)).await {
            Ok(response) => {
                let secret = response
                    .into_model()
                    .map_err(|e| from_sdk(&e, &self.label))?;
                self.seen.lock().expect("poisoned").insert(
                    name.to_ascii_lowercase(),
                    (
                        secret.content_type.clone(),
                        secret.tags.clone().unwrap_or_default(),
                    ),
                );
                Ok(secret
                    .value
                    .map(ApiKey::new)
                    .map(Stored::Value)
                    .unwrap_or(Stored::Missing))
            }
            Err(e) => {
                let err = from_sdk(&e, &self.label);
                if err.kind() == ErrorKind::NotFound {
                    Ok(Stored::Missing)
                } else {
                    Err(err.with_context("secret", name))
                }
            }
        }
    }

    async fn write_one(&self, call: &Call, write: &Write) -> Result<()> {
        let (content_type, mut tags) = self
            .seen
            .lock()
            .expect("poisoned")
            .get(&write.name.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default();
        tags.insert("apimAppName".into(), write.apim_app_name.clone());
        tags.insert("rotatedBy".into(), "apikey-rotator".into());
        match write.expires_at {
            Some(t) => tags.insert(
                "keyExpiresAt".into(),
                crate::rfc3339::format(t, crate::rfc3339::Fraction::Millis),
            ),
            None => tags.remove("keyExpiresAt"),
        };
        let params = SetSecretParameters {
            value: Some(write.key.expose().to_string()),
            content_type,
            tags: Some(tags),
            ..Default::default()
        };
        let body = params
            .try_into()
            .map_err(|e: azure_core::Error| Error::unexpected(e.to_string()))?;
        let options = SecretClientSetSecretOptions {
            method_options: ClientMethodOptions {
                context: call.sdk_context(),
            },
        };
        self.client
            .set_secret(&write.name, body, Some(options))
            .await
            .map(|_| ())
            .map_err(|e| from_sdk(&e, &self.label).with_context("secret", write.name.as_str()))
    }
}

#[async_trait::async_trait]
impl Container for KeyVault {
    fn target_type(&self) -> TargetType {
        TYPE
    }

    fn label(&self) -> &str {
        &self.client.label
    }

    async fn read(&self, names: &[String]) -> Vec<Result<Stored>> {
        // Until the client has met the vault's authentication challenge, every concurrent first
        // request would be challenged; one request alone first keeps it to one challenge.
        let (vault, call) = (&self.client, &self.call);
        let mut results = Vec::with_capacity(names.len());
        let mut rest = names;
        if !vault.primed.load(Ordering::Acquire) {
            if let Some((first, others)) = names.split_first() {
                results.push(vault.read_one(call, first).await);
                vault.primed.store(true, Ordering::Release);
                rest = others;
            }
        }
        let reads = rest.iter().map(|n| vault.read_one(call, n));
        results.extend(crate::fan_out::bounded(call.fan_out(), reads).await);
        results
    }

    async fn write(&self, writes: &[Write]) -> Vec<Result<()>> {
        let (vault, call) = (&self.client, &self.call);
        let sets = writes.iter().map(|w| vault.write_one(call, w));
        crate::fan_out::bounded(call.fan_out(), sets).await
    }
}
