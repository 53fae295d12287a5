//! Key Vault secrets, through the official `azure_security_keyvault_secrets` client.

mod error;

pub use error::{from_sdk, parse_error};

use super::{Container, Stored, TargetDeps, TargetKind, Write};
use crate::azure::call::Call;
use crate::azure::credential::client_options;
use crate::azure::retry::SdkPolicy;
use crate::error::{Error, ErrorKind, Result};
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
        deps: &TargetDeps,
    ) -> Result<Arc<VaultClient>> {
        let mut clients = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(vault_url.as_str()) {
            return Ok(client.clone());
        }
        let client = Arc::new(VaultClient::new(vault_url, label, deps)?);
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
    pub fn new(vault_url: &url::Url, label: &str, deps: &TargetDeps) -> Result<Self> {
        let options = SecretClientOptions {
            client_options: client_options(&deps.http, &deps.cloud, SdkPolicy::PerRequest),
            verify_challenge_resource: Some(deps.cloud.verify_key_vault_challenge),
            ..Default::default()
        };
        let client = SecretClient::new(vault_url.as_str(), deps.credential.clone(), Some(options))
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
    fn kind(&self) -> TargetKind {
        TargetKind::KeyVault
    }

    fn name(&self) -> &str {
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
