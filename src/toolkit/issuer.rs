//! The issuer contract: what the toolkit needs from an API manager that issues keys, in terms
//! that are the same for every API manager. Each issuer lives in its own folder
//! (`toolkit/<issuer>/`) and implements [`Issuer`]; the registry ([`super::registry`]) builds it
//! from its part of the sealed company details.

use crate::azure::retry::Call;
use crate::error::Result;
use crate::secret::ApiKey;
use async_trait::async_trait;
use time::OffsetDateTime;

/// One key of an app, as the API manager holds it.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    /// The key (consumer key).
    pub key: ApiKey,
    /// When it was issued, if known.
    pub issued_at: Option<OffsetDateTime>,
    /// When it expires; `None` means never.
    pub expires_at: Option<OffsetDateTime>,
    /// Whether the key itself is approved (its own status, not its products').
    pub approved: bool,
    /// The key's API product associations, each with its state.
    pub api_products: Vec<ProductAssociation>,
    /// Whether this is a key the rotator created and whose products it has not attached yet.
    /// The issuer keeps this mark in the API manager, so it survives a crash; such a key is
    /// never current (see [`super::policy::recovery`]).
    pub unfinished: bool,
    /// Whether the rotator created this key (its mark is on it, whatever the step).
    pub made_by_rotator: bool,
}

impl IssuedKey {
    /// The products the key is approved for.
    pub fn approved_products(&self) -> impl Iterator<Item = &str> {
        self.api_products
            .iter()
            .filter(|a| a.status == AssociationStatus::Approved)
            .map(|a| a.product.as_str())
    }

    /// Whether the key is approved for `product`.
    pub fn is_approved_for(&self, product: &str) -> bool {
        self.approved_products().any(|p| p == product)
    }
}

/// A key's association with one API product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductAssociation {
    /// The API product's name.
    pub product: String,
    /// Whether the key may call the product's APIs.
    pub status: AssociationStatus,
}

/// The state of a key's association with an API product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssociationStatus {
    /// The key may call the product's APIs.
    Approved,
    /// Waiting for approval: a product with `approvalType: manual` starts new associations so.
    Pending,
    /// Refused by someone (or a state this rotator does not know): never approved by it.
    Revoked,
}

/// An API manager that issues keys for apps. Every issuer passes the conformance suite
/// (`tests/it/issuer_conformance.rs`) against its double in the sandbox.
#[async_trait]
pub trait Issuer: Send + Sync {
    /// All keys of the app, approved or not; a [`crate::error::ErrorKind::NotFound`] error when the
    /// API manager does not know the app. Never creates or changes anything.
    async fn list_keys(&self, call: &Call, app_name: &str) -> Result<Vec<IssuedKey>>;

    /// Creates `key` for the app with the given lifetime (`None`: it never expires), marked
    /// unfinished from its creation on, associates `api_products` with it (marking it so) and
    /// approves every association that is pending; returns the complete key as stored. Other
    /// keys of the app are left alone. On failure the half-made key is deleted when it can be;
    /// when it cannot, the mark lets the next run recognise it.
    async fn create_key(
        &self,
        call: &Call,
        app_name: &str,
        key: &ApiKey,
        lifetime: Option<time::Duration>,
        api_products: &[String],
    ) -> Result<IssuedKey>;

    /// Finishes a key whose renewal was interrupted as [`Issuer::create_key`] would have:
    /// attaches those of `api_products` it lacks, approves its pending associations with them;
    /// returns it as stored.
    async fn finish_key(
        &self,
        call: &Call,
        app_name: &str,
        key: &ApiKey,
        api_products: &[String],
    ) -> Result<IssuedKey>;

    /// Deletes a key. Only for unfinished keys, which no consumer holds.
    async fn delete_key(&self, call: &Call, app_name: &str, key: &ApiKey) -> Result<()>;
}

/// An issuer's part of the sealed company details (the `issuer` object, told apart by its
/// `type`): what the toolkit, `seal` and `validate` need from it. Implemented by each issuer's
/// config type, which [`super::registry`] names.
pub trait IssuerConfig: std::fmt::Debug + Send + Sync {
    /// Checks what serde cannot (non-empty names, URL schemes, keys that parse). The problem
    /// names a path inside `issuer` and never quotes a value (it may be a pasted secret).
    fn validate(&self) -> std::result::Result<(), ConfigProblem>;

    /// The `issuer` object with every secret redacted, `type` first, for `seal --check`.
    fn redacted(&self) -> serde_json::Value;

    /// One line for `validate`: which API manager and where, without any secret.
    fn describe(&self) -> String;

    /// The issuer, on the shared client. [`crate::error::ErrorKind::ConfigInvalid`] when part
    /// of the config is unusable.
    fn connect(&self, http: reqwest::Client) -> Result<std::sync::Arc<dyn Issuer>>;
}

/// A problem [`IssuerConfig::validate`] found: where inside `issuer`, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The field's path inside `issuer` (`serviceAccountKey.token_uri`).
    pub path: String,
    /// What is wrong or expected (`expected an https URL`).
    pub problem: String,
}

impl ConfigProblem {
    /// A problem at `path`.
    pub fn new(path: &str, problem: &str) -> Self {
        Self {
            path: path.to_string(),
            problem: problem.to_string(),
        }
    }
}
