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
    /// Whether the key's own status is revoked (Apigee: `status: revoked`): it opens nothing
    /// until reactivated ([`Issuer::reactivate_key`]). Distinct from a key that is merely not
    /// approved (a status this rotator does not know): `approved` is false for both.
    pub revoked: bool,
    /// The [`fingerprint`] of the key this key was created to replace (set in the same call
    /// that created it, with the unfinished mark, so a crash cannot lose it). `None` for a key
    /// the rotator did not make, or made when there was no key to replace. Only a key some
    /// rotator key replaces is ever revoked by the rotator.
    pub replaces: Option<String>,
    /// Set by a rollback ([`Issuer::set_marks`]): while set, this key is current over every
    /// key issued before this time; a complete key issued after it ends the pin (see
    /// [`super::policy::current_key`]).
    pub pinned_at: Option<OffsetDateTime>,
    /// Set by a rollback on the bad key it withdraws: a withdrawn key is never current again,
    /// and is revoked once every target holds the current key.
    pub withdrawn_at: Option<OffsetDateTime>,
}

/// The rotator's fingerprint of a key, as [`IssuedKey::replaces`] holds it: the first 16 hex
/// characters of its SHA-256 (64 bits: enough to tell an app's keys apart, and nothing of the
/// key itself).
pub fn fingerprint(key: &ApiKey) -> String {
    let mut hex = key.sha256_hex();
    hex.truncate(16);
    hex
}

/// The rotator's lifecycle marks on a key that exists, as [`Issuer::set_marks`] sets them:
/// each field replaces the mark of the same name (`None` removes it); the key's other
/// attributes, and its creation marks (unfinished / products attached, `replaces`), are kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyMarks {
    /// [`IssuedKey::pinned_at`].
    pub pinned_at: Option<OffsetDateTime>,
    /// [`IssuedKey::withdrawn_at`].
    pub withdrawn_at: Option<OffsetDateTime>,
    /// When the `renewal.upcoming` notice of this key was delivered ([`crate::notify`]): set
    /// once a channel accepted it, so the notice goes out once per key across runs and
    /// instances. Read with [`Issuer::list_keys_with_notices`]; a rollback's marks (this
    /// field `None`) remove it, since its pin moves the key's renewal due date.
    pub noticed_at: Option<OffsetDateTime>,
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
    /// unfinished from its creation on and, when it is made to replace a key, marked with that
    /// key's [`fingerprint`] in the same call ([`IssuedKey::replaces`]), associates `api_products` with it (marking it so) and
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
        replaces: Option<&ApiKey>,
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

    /// Revokes a key with the API manager's own revoke (Apigee: `POST .../keys/{key}
    /// ?action=revoke`), never a delete, so it can be undone ([`Issuer::reactivate_key`]);
    /// returns the key as stored. Revoking a revoked key changes nothing. A
    /// [`crate::error::ErrorKind::NotFound`] error for a key or app the API manager does not
    /// know.
    async fn revoke_key(&self, call: &Call, app_name: &str, key: &ApiKey) -> Result<IssuedKey> {
        let _ = (call, app_name, key);
        Err(crate::error::Error::config(
            "this issuer cannot revoke keys",
        ))
    }

    /// Approves a revoked key again (Apigee: `?action=approve`); returns the key as stored.
    /// Its product associations are as they were. Reactivating an approved key changes
    /// nothing.
    async fn reactivate_key(&self, call: &Call, app_name: &str, key: &ApiKey) -> Result<IssuedKey> {
        let _ = (call, app_name, key);
        Err(crate::error::Error::config(
            "this issuer cannot reactivate keys",
        ))
    }

    /// Sets the rotator's lifecycle marks of an existing key to `marks`, every other
    /// attribute of the key kept; returns the key as stored.
    async fn set_marks(
        &self,
        call: &Call,
        app_name: &str,
        key: &ApiKey,
        marks: KeyMarks,
    ) -> Result<IssuedKey> {
        let _ = (call, app_name, key, marks);
        Err(crate::error::Error::config("this issuer cannot mark keys"))
    }

    /// The app's keys as [`Issuer::list_keys`] lists them (the same one read), each with its
    /// [`KeyMarks::noticed_at`] mark. By default an error: an issuer that keeps no notice mark
    /// cannot send a notice once per key.
    async fn list_keys_with_notices(
        &self,
        call: &Call,
        app_name: &str,
    ) -> Result<Vec<(IssuedKey, Option<OffsetDateTime>)>> {
        let _ = (call, app_name);
        Err(crate::error::Error::config(
            "this issuer keeps no notice marks on keys",
        ))
    }
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
