//! Targets: the places consumer apps read keys from, one folder per kind.
//!
//! A target kind owns, in `src/targets/<kind>/`, its mapping section (model, checks, duplicate
//! rule, JSON Schema fragment), its planner and its client, behind [`Kind`]; [`KINDS`] (with
//! [`SECTIONS`]) lists every kind once. A kind's containers hold entries (a vault of secrets, a site of app
//! settings), read and written in batches because some containers must be read once and
//! written once. This file holds only what is common: the [`Container`] contract, the plan's
//! types ([`PlannedContainer`], [`Entry`], [`Write`], [`Stored`]), the report's [`TargetType`],
//! [`TargetContext`], and [`plan`], the loop over the registry. Every kind passes the
//! conformance suite in `tests/it/conformance.rs`.

// The registry: every target kind, once (its folder, its place in `KINDS`, its sections in
// `SECTIONS`). The mapping's walk, merge and schema and the planner find kinds only here.

pub mod app_configuration;
pub mod app_settings;
pub mod application_api;
pub mod files;
pub mod key_vault;

/// Every target kind, in the order the plan lists their containers (and so the report its
/// entries, and [`AppsMapping::apim_app_names`] the apps).
pub static KINDS: [&dyn Kind; 5] = [
    &key_vault::KIND,
    &application_api::KIND,
    &app_settings::KIND,
    &app_configuration::KIND,
    &files::KIND,
];

/// Every kind's mapping sections, in the order messages list them (`unknown field; expected
/// ...`); each is one of [`KINDS`]' sections (a test checks); a new kind's go last.
pub const SECTIONS: [&str; 7] = [
    "keyVault",
    "applicationApis",
    "appConfiguration",
    "functionApps",
    "webApps",
    "staticWebApps",
    "files",
];

use crate::azure::cloud::Cloud;
use crate::error::{Error, ErrorKind, Result};
use crate::mapping::walk::{Walked, Walker};
use crate::mapping::AppsMapping;
use crate::secret::ApiKey;
use crate::settings::Settings;
use azure_core::credentials::TokenCredential;
use serde_json::Value;
use std::sync::Arc;
use time::OffsetDateTime;

/// What the report calls a container and its entries: one per report `type` (a kind may have
/// several: app settings are a Function App's, a Web App's or a Static Web App's).
///
/// Words, one per meaning: a container's *label* is how the report names that container
/// (`kv-one`, `func-orders/staging`, an API's URL: [`Container::label`]); a type's *noun* is what
/// messages call any container of the type (`Key Vault`); an entry's *name* is its own name in its
/// container (a secret's, a setting's), and [`TargetType::describe`] is how messages name an
/// entry (`secret s1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TargetType {
    report_type: &'static str,
    noun: &'static str,
    entry_noun: &'static str,
    quote_entry: bool,
    remedies: Remedies,
}

/// What the report tells an operator to do when a target of one type is refused, is not
/// found, or does not accept the rotator's credential (the codes every kind's `parse_error`
/// gives); `None` falls back to the report's generic advice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Remedies {
    /// For a refusal (`Forbidden`, `AuthorizationFailed`, ...): the role the rotator needs.
    pub forbidden: Option<&'static str>,
    /// For a missing container: which mapping fields name it.
    pub not_found: Option<&'static str>,
    /// For a credential the target does not accept.
    pub unauthenticated: Option<&'static str>,
}

impl TargetType {
    /// A type whose report `type` is `report_type`, whose containers are called `noun`, and
    /// whose entries are called `entry_noun` followed by their name (in quotes if `quote_entry`).
    pub const fn new(
        report_type: &'static str,
        noun: &'static str,
        entry_noun: &'static str,
        quote_entry: bool,
    ) -> Self {
        Self {
            report_type,
            noun,
            entry_noun,
            quote_entry,
            remedies: Remedies {
                forbidden: None,
                not_found: None,
                unauthenticated: None,
            },
        }
    }

    /// This type with the report's `remedies` for its failures.
    pub const fn with_remedies(self, remedies: Remedies) -> Self {
        Self { remedies, ..self }
    }

    /// What the report advises for this type's failures.
    pub fn remedies(self) -> Remedies {
        self.remedies
    }

    /// The type whose report `type` is `report_type`, among every kind's [`Kind::types`].
    pub fn of_report(report_type: &str) -> Option<TargetType> {
        KINDS
            .iter()
            .flat_map(|k| k.types().iter().copied())
            .find(|t| t.report_type == report_type)
    }

    /// The report's `type` value (`KEY_VAULT`).
    pub fn report_type(self) -> &'static str {
        self.report_type
    }

    /// What messages call a container of this type (`Key Vault`).
    pub fn noun(self) -> &'static str {
        self.noun
    }

    /// How messages name the entry called `name` (`secret s1`, `the key of "ref"`).
    pub fn describe(self, name: &str) -> String {
        if self.quote_entry {
            format!("{} \"{name}\"", self.entry_noun)
        } else {
            format!("{} {name}", self.entry_noun)
        }
    }
}

/// A target kind: the mapping sections it owns (read, checked, merged) and the containers it
/// plans from them. Every kind is listed once in [`KINDS`].
pub trait Kind: Sync {
    /// The mapping's top-level sections this kind reads (`keyVault`; `functionApps`, `webApps`,
    /// `staticWebApps`).
    fn sections(&self) -> &'static [&'static str];

    /// The report types of this kind's containers (`KEY_VAULT`; `FUNCTION_APP`, `WEB_APP`,
    /// `STATIC_WEB_APP`).
    fn types(&self) -> &'static [TargetType];

    /// Reads one entry of `section` at `path` (`keyVault[0]`), reporting every problem through
    /// `walker`; `None` when the entry cannot be used. The result holds the kind's
    /// [`Group`](crate::mapping::Group) and the place and identity of each target it kept.
    fn read(&self, section: &str, entry: &Value, path: &str, walker: &mut Walker)
        -> Option<Walked>;

    /// The kind's JSON Schema fragment (a JSON object): the `properties` of its sections and
    /// the `$defs` they use, merged into `schema/apikeyrotationapps.schema.json`.
    fn schema(&self) -> &'static str;

    /// The containers of this kind that `mapping` names, each with its entries, in mapping order.
    fn plan(&self, mapping: &AppsMapping, context: &TargetContext)
        -> Result<Vec<PlannedContainer>>;
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
    /// The error of an entry (`entry_desc`: `"NAME" in <kind> <container>`) whose reference
    /// pins a version: a new version would not be seen, so the reference is neither followed
    /// nor rotated. `None` for a versionless reference.
    pub fn pinned_error(&self, entry_desc: &str) -> Option<Error> {
        let version = self.version.as_ref()?;
        Some(
            Error::new(
                ErrorKind::ConfigInvalid,
                format!(
                    "{entry_desc} refers to version {version} of Key Vault secret {}: a new version would not be seen; \
                     make the reference versionless",
                    self.secret_name
                ),
            )
            .with_code("PinnedKeyVaultReference"),
        )
    }

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
    /// Its type, for the report.
    fn target_type(&self) -> TargetType;

    /// How the report names the container (vault name, `site/slot`, API URL).
    fn label(&self) -> &str;

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

/// A container with the entries the mapping names in it: one item of the plan.
pub struct PlannedContainer {
    /// The container.
    pub container: Arc<dyn Container>,
    /// Its mapped entries.
    pub entries: Vec<Entry>,
}

/// What every kind's clients are built with to reach their services.
#[derive(Clone)]
pub struct TargetContext {
    /// The shared HTTP client.
    pub http: reqwest::Client,
    /// The Azure credential.
    pub credential: Arc<dyn TokenCredential>,
    /// The cloud.
    pub cloud: Cloud,
    /// The app settings (header values of application APIs).
    pub settings: Arc<Settings>,
    /// Vault clients kept across runs, so each vault's authentication challenge is answered
    /// once per process rather than once per run ([`TargetContext::key_vault`]).
    pub vaults: key_vault::VaultClients,
    /// The run's retry policy and deadline, which every request of the targets follows.
    pub call: crate::azure::call::Call,
}

/// Every kind's containers, kinds in the registry's order ([`KINDS`]).
pub fn plan(mapping: &AppsMapping, context: &TargetContext) -> Result<Vec<PlannedContainer>> {
    let mut out = Vec::new();
    for kind in KINDS {
        out.extend(kind.plan(mapping, context)?);
    }
    Ok(out)
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

    /// Every section is listed once and owned by exactly one kind.
    #[test]
    fn sections_are_the_kinds_sections() {
        let mut owned: Vec<&str> = KINDS.iter().flat_map(|k| k.sections().to_vec()).collect();
        let mut listed = SECTIONS.to_vec();
        owned.sort_unstable();
        listed.sort_unstable();
        assert_eq!(owned, listed);
        listed.dedup();
        assert_eq!(listed.len(), SECTIONS.len(), "a section is listed twice");
    }

    /// Every report type belongs to one kind, is found by its name, and says what to do when
    /// the rotator is refused or the container is not found (the report's advice per type).
    #[test]
    fn every_report_type_is_found_and_has_remedies() {
        let types: Vec<TargetType> = KINDS.iter().flat_map(|k| k.types().to_vec()).collect();
        let mut names: Vec<&str> = types.iter().map(|t| t.report_type()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(
            names.len(),
            types.len(),
            "a report type is used by two kinds"
        );
        for t in types {
            assert_eq!(TargetType::of_report(t.report_type()), Some(t));
            assert!(t.remedies().forbidden.is_some(), "{}", t.report_type());
            assert!(t.remedies().not_found.is_some(), "{}", t.report_type());
        }
        assert_eq!(TargetType::of_report("TOOLKIT"), None);
    }

    #[test]
    fn references_never_hold_a_key() {
        let r = SecretRef::from_secret_uri("https://kv1.vault.azure.net/secrets/a").unwrap();
        assert!(!Stored::KeyVaultReference(r).holds(&ApiKey::new("x")));
    }
}
