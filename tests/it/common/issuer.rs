//! What the tests need from an issuer's double in the sandbox, and the list of issuers. Each
//! issuer has its own file beside this one (`apigee.rs`) implementing [`IssuerDouble`]; the
//! generic helpers ([`super::Env::writes`], [`super::Env::all_keys`]) and the issuer
//! conformance suite (`tests/it/issuer_conformance.rs`) go through [`ISSUERS`] or the issuer's
//! value, never through one issuer's paths or fields.

use super::Env;
use apikey_rotator::toolkit::Issuer;
use serde_json::Value;
use std::sync::Arc;

/// Every issuer whose double the sandbox runs.
pub const ISSUERS: &[&dyn IssuerDouble] = &[&super::apigee::Apigee];

/// A key as the double stores it (read from `admin/state`, not through our client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// The full key.
    pub key: String,
    /// The key's own status is approved.
    pub approved: bool,
    /// (product, association status as the double spells it: `approved`, `pending`, ...).
    pub products: Vec<(String, String)>,
    /// The rotator's mark on the key.
    pub mark: Mark,
    /// The key's own status is revoked (the issuer's revoke, not a delete).
    pub revoked: bool,
    /// The key's attributes, (name, value) in stored order, where the issuer has them (the
    /// rotator's lifecycle marks live there).
    pub attributes: Vec<(String, String)>,
}

/// The rotator's mark on a key it created (Apigee: the `ApiKeyRotatorState` attribute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// No mark: a key the rotator did not create.
    None,
    /// Created; its products are not attached yet.
    Unfinished,
    /// Its products are attached; complete once each association is approved.
    ProductsAttached,
}

/// A step of a renewal a fault can break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Reading an app's keys.
    List,
    /// Creating the key.
    Create,
    /// Attaching the API products to it.
    AttachProducts,
    /// Approving a pending product association.
    Approve,
    /// Deleting a key.
    Delete,
    /// Revoking a key (the key's own status).
    Revoke,
}

/// What the tests need from one issuer's double.
pub trait IssuerDouble: Sync {
    /// The test name and the sandbox's service name of the double (`admin/faults`, the log).
    fn service(&self) -> &'static str;

    /// The issuer under test, built by the product's registry from the sandbox's sealed
    /// details, on a client that trusts the sandbox CA.
    fn issuer(&self, env: &Env) -> Arc<dyn Issuer>;

    /// An app of the demo data whose key's only product approves new keys by itself, and
    /// that product.
    fn app_with_auto_product(&self) -> (&'static str, &'static str);

    /// An app of the demo data whose key's only product needs an approval for each new key
    /// (Apigee: `approvalType: manual`), and that product.
    fn app_with_manual_product(&self) -> (&'static str, &'static str);

    /// The keys of `app` in the double's state (`admin/state`).
    fn stored_keys(&self, state: &Value, app: &str) -> Vec<StoredKey>;

    /// Every full key the double holds, all apps.
    fn all_keys(&self, state: &Value) -> Vec<String>;

    /// A request of the log that only reads (a token call, say), beyond GETs.
    fn only_reads(&self, request: &Value) -> bool;

    /// An `admin/faults` spec answering `status` to every request of `step` (until cleared).
    fn fault(&self, step: Step, status: u16) -> Value;
}
