//! The toolkit: sealed company details, the renewal policy, and the API-manager issuers.
//!
//! [`KeySource`] is what the rotation engine asks for an app's current key: either the
//! in-process [`Toolkit`] (which talks to the API manager through an [`Issuer`]) or a
//! [`remote::RemoteToolkit`] that calls a ToolkitApp in another function app.
//!
//! Everything here but the issuers' folders is the same for every API manager: the issuer
//! contract ([`issuer`]), the one list of issuers ([`registry`]), the sealed envelope
//! ([`sealed`]), the renewal decisions ([`policy`]), the ToolkitApp contract ([`request`],
//! [`remote`]) and this module's [`Toolkit`]. An issuer is one folder (`apigee/`: its config
//! inside the sealed details, auth, client, errors) and one line of [`registry`].

pub mod apigee;
pub mod issuer;
pub mod policy;
pub mod registry;
pub mod remote;
pub mod request;
pub mod sealed;

pub use crate::azure::call::Call;
use crate::error::{Error, ErrorKind, Result};
use crate::secret::ApiKey;
use crate::settings::{Settings, COMPANY_DETAILS, TOOLKIT_APP_URL, TOOLKIT_UUID};
use async_trait::async_trait;
use policy::{Decision, RenewReason};
use std::collections::HashMap;
use std::sync::Arc;
use time::OffsetDateTime;

pub use issuer::{
    fingerprint, AssociationStatus, IssuedKey, Issuer, IssuerConfig, KeyMarks, ProductAssociation,
};
pub use policy::RenewalPolicy;

/// The answer to "which key should consumers of this app use now".
#[derive(Debug, Clone)]
pub struct KeyGrant {
    /// The API-manager app.
    pub app_name: String,
    /// The key to use.
    pub api_key: ApiKey,
    /// When the key was issued, if known.
    pub issued_at: Option<OffsetDateTime>,
    /// When it expires; `None` means never.
    pub expires_at: Option<OffsetDateTime>,
    /// Whether this call created the key; in a dry run (`KeyRequest::dry_run`), whether it
    /// would have (`api_key` is then the current key, which the renewal would replace).
    pub renewed: bool,
    /// What happened, for humans; shows at most the last four characters of a key.
    pub message: String,
}

/// Options of one key request.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyRequest {
    /// Renew now regardless of the renewal window.
    pub force: bool,
    /// Decide but change nothing in the API manager.
    pub dry_run: bool,
}

/// Where the rotation engine gets keys from: the in-process toolkit or a remote ToolkitApp.
#[async_trait]
pub trait KeySource: Send + Sync {
    /// The key consumers of `app_name` should use now, renewing it first when the policy (or
    /// `request.force`) says so and `request.dry_run` is not set. Repeated calls return the
    /// same key until it is next due for renewal. Errors: [`ErrorKind::NotFound`] for an unknown
    /// app, [`ErrorKind::ConfigInvalid`] for configuration problems, other kinds when the API
    /// manager fails.
    async fn current_key(
        &self,
        call: &Call,
        app_name: &str,
        request: KeyRequest,
    ) -> Result<KeyGrant>;

    /// Every key the API manager holds for `app_name`, as it holds them (approved or not,
    /// unfinished ones included), with the renewal policy in force: what `status` shows. Reads
    /// only: never finishes, removes or renews a key, and takes no lock. Errors:
    /// [`ErrorKind::NotFound`] for an app the API manager does not know, other kinds when it
    /// fails. By default a configuration error with code [`NEEDS_IN_PROCESS_TOOLKIT`]: a
    /// remote ToolkitApp hands out the current key only.
    async fn app_keys(&self, call: &Call, app_name: &str) -> Result<AppKeyList> {
        let _ = (call, app_name);
        Err(Error::config(format!(
            "the list of an app's keys (status) needs the in-process toolkit: {TOOLKIT_APP_URL} is set, \
             and a remote ToolkitApp hands out the current key only; run status where \
             {COMPANY_DETAILS} and {TOOLKIT_UUID} are set instead"
        ))
        .with_code(NEEDS_IN_PROCESS_TOOLKIT))
    }

    /// Revokes `key` of `app_name` (the API manager's revoke, never a delete) under the app's
    /// renewal locks, after reading the app's keys again under them: only a key
    /// [`policy::may_revoke`] allows is revoked (never the current or a pinned key, never a
    /// key no rotator key replaces); a [`ErrorKind::Conflict`] error with code
    /// [`NOT_REVOCABLE_CODE`] otherwise. A key revoked already is returned as it is. `why` is
    /// logged.
    async fn revoke(
        &self,
        call: &Call,
        app_name: &str,
        key: &ApiKey,
        why: &str,
    ) -> Result<IssuedKey> {
        let _ = (call, app_name, key, why);
        Err(needs_in_process("Revoking a key"))
    }

    /// Rolls `app_name` back to the key its current key replaced ([`IssuedKey::replaces`]),
    /// under the app's renewal locks, after reading its keys under them: reactivates that key
    /// when it was revoked, pins it ([`IssuedKey::pinned_at`]: current again, renewals held
    /// off) and withdraws the bad key ([`IssuedKey::withdrawn_at`]: never current again,
    /// revoked once every target holds the restored key), in that order, so that a crash
    /// between any two steps leaves a valid current key and the next rollback finishes what is
    /// left. Idempotent: an app rolled back already answers [`RollbackOutcome::done_before`]. With `dry_run`, decides and
    /// changes nothing. A [`ErrorKind::Conflict`] error with code [`NO_PREVIOUS_KEY_CODE`] when
    /// there is no still-valid key to go back to.
    async fn rollback(
        &self,
        call: &Call,
        app_name: &str,
        dry_run: bool,
    ) -> Result<RollbackOutcome> {
        let _ = (call, app_name, dry_run);
        Err(needs_in_process("A rollback"))
    }

    /// Withdraws `key`, a key of `app_name` this run created and never distributed (its key
    /// check failed): deletes it in the API manager, under the app's renewal locks, and only
    /// when the rotator made it (a key someone else made may be held by consumers). A key that
    /// is already gone is withdrawn.
    async fn withdraw(&self, call: &Call, app_name: &str, key: &ApiKey) -> Result<()> {
        let _ = (call, app_name, key);
        Err(needs_in_process("Withdrawing a key that failed its check"))
    }

    /// Every key of `app_name` with the renewal policy, as [`KeySource::app_keys`] lists them
    /// (one read, no lock), and the keys whose `renewal.upcoming` notice was delivered (by
    /// [`fingerprint`], with when): what the notifications after a run need
    /// ([`crate::notify::upcoming`]). By default a configuration error with code
    /// [`NEEDS_IN_PROCESS_TOOLKIT`], as [`KeySource::app_keys`].
    async fn notice_keys(&self, call: &Call, app_name: &str) -> Result<NoticeKeys> {
        let _ = (call, app_name);
        Err(needs_in_process("A notice sent once per key").with_code(NEEDS_IN_PROCESS_TOOLKIT))
    }

    /// Marks `key` of `app_name` as noticed at `at` ([`KeyMarks::noticed_at`]) under the
    /// app's renewal locks, its other marks kept; a key already marked, or gone, is left as
    /// it is.
    async fn mark_noticed(
        &self,
        call: &Call,
        app_name: &str,
        key: &ApiKey,
        at: OffsetDateTime,
    ) -> Result<()> {
        let _ = (call, app_name, key, at);
        Err(needs_in_process("Marking a key's notice as sent"))
    }

    /// The renewal policy in force, when this key source knows it without a request (the
    /// in-process toolkit does; a remote ToolkitApp does not): lets the notifications skip
    /// reading the keys of an app whose key is far from due.
    fn renewal_policy(&self) -> Option<RenewalPolicy> {
        None
    }
}

/// What [`KeySource::notice_keys`] answers.
#[derive(Debug, Clone)]
pub struct NoticeKeys {
    /// The app's keys and policy.
    pub list: AppKeyList,
    /// The [`fingerprint`]s of the keys whose notice was delivered, and when.
    pub noticed: Vec<(String, OffsetDateTime)>,
}

/// Error code of a rollback with no still-valid key to go back to.
pub const NO_PREVIOUS_KEY_CODE: &str = "NoPreviousKey";

/// What a rollback did (or, in a dry run, would do) to one app's keys.
#[derive(Debug, Clone)]
pub struct RollbackOutcome {
    /// The key that is current again (in a dry run: that would be).
    pub restored: IssuedKey,
    /// The bad key, withdrawn (in a dry run: that would be).
    pub withdrawn: IssuedKey,
    /// Whether the restored key was revoked and is (would be) reactivated.
    pub reactivated: bool,
    /// Whether an earlier rollback had done it all already (nothing was changed now).
    pub done_before: bool,
}

/// Error code of a revocation the keys themselves forbid (see [`KeySource::revoke`]).
pub const NOT_REVOCABLE_CODE: &str = "NotRevocable";

/// The error of a lifecycle step a key source other than the in-process toolkit cannot take.
fn needs_in_process(what: &str) -> Error {
    Error::config(format!(
        "{what} needs the in-process toolkit: {TOOLKIT_APP_URL} is set, and a remote ToolkitApp only hands out keys"
    ))
}

/// Error code of [`KeySource::app_keys`] on a key source that cannot list keys (a remote
/// ToolkitApp).
pub const NEEDS_IN_PROCESS_TOOLKIT: &str = "NeedsInProcessToolkit";

/// Every key of one app as the API manager holds them ([`KeySource::app_keys`]).
#[derive(Debug, Clone)]
pub struct AppKeyList {
    /// The API-manager app.
    pub app_name: String,
    /// Its keys, in the API manager's order.
    pub keys: Vec<IssuedKey>,
    /// The renewal policy of the sealed company details (when a key is due).
    pub policy: RenewalPolicy,
}

/// A lock on one app's renewals that every instance of the function app shares (a blob lease in
/// the host storage account): a function app scales out, and two instances that both found an
/// app due would otherwise both create a key, or one would take the other's half-made key for
/// an abandoned one.
#[async_trait]
pub trait RenewalLock: Send + Sync {
    /// Waits until this process holds `app_name`'s renewal lock (another instance may be
    /// renewing the app), within the run's deadline. Errors when the lock's storage fails or
    /// the wait runs out: nothing is renewed then, and the current key stays in place.
    async fn hold(&self, call: &Call, app_name: &str) -> Result<Box<dyn HeldRenewal>>;
}

/// A held [`RenewalLock`]; dropping it releases it too, in the background.
#[async_trait]
pub trait HeldRenewal: Send {
    /// Releases the lock.
    async fn release(self: Box<Self>);
}

/// Setting: minutes that must pass after a key was issued before a forced renewal of the same
/// app may replace it (default 60; `0` turns the limit off).
pub const FORCE_INTERVAL_SETTING: &str = "TOOLKIT_FORCE_MIN_INTERVAL_MINUTES";

/// Error code of a forced renewal refused by [`FORCE_INTERVAL_SETTING`].
pub const FORCE_LIMITED_CODE: &str = "ForcedRenewalTooSoon";

/// The in-process toolkit: the renewal policy applied through an [`Issuer`].
pub struct Toolkit {
    issuer: Arc<dyn Issuer>,
    policy: RenewalPolicy,
    // Serialises renewals of the same app inside this process, so two concurrent requests
    // cannot both create a key.
    app_locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    // The same across instances, when the host storage account is configured.
    renewal_lock: Option<Arc<dyn RenewalLock>>,
    // A forced renewal may not replace a key younger than this.
    force_interval: time::Duration,
}

/// What one pass over an app's keys came to.
enum Attempt {
    Done(KeyGrant),
    /// It must change the app's keys: only under the app's renewal lock.
    NeedsLock,
}

impl std::fmt::Debug for Toolkit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Toolkit")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Toolkit {
    /// A toolkit over `issuer` with `policy`.
    pub fn new(issuer: Arc<dyn Issuer>, policy: RenewalPolicy) -> Self {
        Self {
            issuer,
            policy,
            app_locks: std::sync::Mutex::new(HashMap::new()),
            renewal_lock: None,
            force_interval: time::Duration::hours(1),
        }
    }

    /// This toolkit, renewing each app only under `lock` (shared by every instance).
    pub fn with_renewal_lock(mut self, lock: Option<Arc<dyn RenewalLock>>) -> Self {
        self.renewal_lock = lock;
        self
    }

    /// This toolkit, refusing a forced renewal of a key younger than `interval` (zero: never).
    pub fn with_force_interval(mut self, interval: time::Duration) -> Self {
        self.force_interval = interval;
        self
    }

    /// Unseals `COMPANYDETAILS` with `TOOLKITUUID` from settings, checks the location binding
    /// against `settings.site_name`, and builds the issuer on the shared client.
    pub fn from_settings(settings: &Settings, http: reqwest::Client) -> Result<Self> {
        let missing = |name: &str, what: &str| Error::config(format!("{name}: missing; {what}"));
        let sealed = settings.company_details.as_ref().ok_or_else(|| {
            missing(
                COMPANY_DETAILS,
                "expected the sealed company details printed by `apikey-rotator seal`",
            )
        })?;
        let uuid = settings.toolkit_uuid.as_ref().ok_or_else(|| {
            missing(
                TOOLKIT_UUID,
                "expected the toolkit UUID that sealed COMPANYDETAILS",
            )
        })?;
        let details = sealed::open(uuid.expose(), sealed.expose())?;
        sealed::check_location(&details, settings.site_name.as_deref())?;
        let issuer = details.issuer.config().connect(http)?;
        let minutes = match settings.get(FORCE_INTERVAL_SETTING).map(str::trim) {
            None | Some("") => 60,
            Some(v) => v.parse::<u32>().map_err(|_| {
                Error::config(format!(
                    "{FORCE_INTERVAL_SETTING}: expected a whole number of minutes (0 turns the limit off), got \"{v}\""
                ))
            })?,
        };
        Ok(Self::new(issuer, details.policy)
            .with_force_interval(time::Duration::minutes(i64::from(minutes))))
    }

    /// The policy in force.
    pub fn policy(&self) -> RenewalPolicy {
        self.policy
    }

    fn lock_for(&self, app_name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.app_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(app_name.to_string()).or_default().clone()
    }
}

/// A new key: 32 alphanumeric characters from the OS random generator (about 190 bits).
pub fn generate_key() -> ApiKey {
    ApiKey::new(random_alphanumeric(32))
}

pub(crate) fn random_alphanumeric(len: usize) -> String {
    use rand::Rng;
    rand::rngs::OsRng
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn describe_expiry(expires_at: Option<OffsetDateTime>, now: OffsetDateTime) -> String {
    match expires_at {
        None => "never expires".to_string(),
        Some(t) => format!(
            "expires on {} ({} days from now)",
            t.date(),
            (t - now).whole_days()
        ),
    }
}

fn describe_reason(
    reason: &RenewReason,
    policy: &RenewalPolicy,
    current: Option<&IssuedKey>,
) -> String {
    match (reason, current) {
        (RenewReason::ExpiresSoon { expires_at }, Some(c)) => format!(
            "key {} expires on {}, inside the {}-day renewal window",
            c.key,
            expires_at.date(),
            policy.renew_before_expiry_days
        ),
        (RenewReason::Forced, Some(c)) => format!("renewal of key {} was forced", c.key),
        (RenewReason::Forced, None) => {
            "renewal was forced and the app has no complete, unexpired key".into()
        }
        _ => "the app has no complete, unexpired key".into(),
    }
}

fn grant(app_name: &str, c: IssuedKey, renewed: bool, message: String) -> KeyGrant {
    KeyGrant {
        app_name: app_name.to_string(),
        api_key: c.key,
        issued_at: c.issued_at,
        expires_at: c.expires_at,
        renewed,
        message,
    }
}

impl Toolkit {
    /// Completes or removes every key of the app that the rotator created but did not finish
    /// (a crash, or a failed clean-up, in an earlier run), updating `credentials` to match.
    /// Returns the keys it finished.
    async fn recover(
        &self,
        call: &Call,
        app_name: &str,
        credentials: &mut Vec<IssuedKey>,
        now: OffsetDateTime,
    ) -> Result<Vec<ApiKey>> {
        let mut finished = Vec::new();
        let keys: Vec<ApiKey> = credentials.iter().map(|c| c.key.clone()).collect();
        for key in keys {
            let Some(at) = credentials.iter().position(|c| c.key == key) else {
                continue;
            };
            let u = credentials[at].clone();
            let Some(recovery) = policy::recovery(&u, credentials, now) else {
                continue;
            };
            match recovery {
                policy::Recovery::Finish { products } => {
                    match self
                        .issuer
                        .finish_key(call, app_name, &u.key, &products)
                        .await
                    {
                        Ok(done) => {
                            tracing::info!(app = app_name, key = %done.key, "finished a key an earlier run left unfinished");
                            credentials[at] = done;
                            finished.push(u.key.clone());
                        }
                        Err(e) => {
                            let e = e.with_context(
                                "unfinished key",
                                format!("{} (left by an earlier run) could not be finished", u.key),
                            );
                            if !e.is_temporary() {
                                // It will not get better: remove it so the next run starts clean.
                                if let Err(d) = self.issuer.delete_key(call, app_name, &u.key).await
                                {
                                    return Err(e.with_context("cleanup", d.to_string()));
                                }
                            }
                            return Err(e);
                        }
                    }
                }
                policy::Recovery::Remove { why } => {
                    self.issuer
                        .delete_key(call, app_name, &u.key)
                        .await
                        .map_err(|e| {
                            e.with_context(
                                "unfinished key",
                                format!("{} (left by an earlier run) could not be deleted", u.key),
                            )
                        })?;
                    tracing::info!(app = app_name, key = %u.key, why, "deleted a key an earlier run left unfinished");
                    credentials.retain(|c| c.key != u.key);
                }
            }
        }
        Ok(finished)
    }
}

#[async_trait]
impl KeySource for Toolkit {
    async fn current_key(
        &self,
        call: &Call,
        app_name: &str,
        request: KeyRequest,
    ) -> Result<KeyGrant> {
        let lock = self.lock_for(app_name);
        let _guard = lock.lock().await;
        // Most calls change nothing and need no shared lock; one that must change the app's
        // keys takes it, then reads the keys again: another instance may have renewed (or
        // finished a half-made key) while this one waited.
        if let Attempt::Done(grant) = self.attempt(call, app_name, request, false).await? {
            return Ok(grant);
        }
        let held = match &self.renewal_lock {
            Some(l) => l.hold(call, app_name).await?,
            None => {
                return Err(Error::unexpected(
                    "a renewal lock was asked for without one",
                ))
            }
        };
        let result = self.attempt(call, app_name, request, true).await;
        held.release().await;
        match result? {
            Attempt::Done(grant) => Ok(grant),
            Attempt::NeedsLock => Err(Error::unexpected("the renewal lock is held but not seen")),
        }
    }

    /// One `list_keys` call: no recovery, no decision, no lock (status changes nothing).
    async fn app_keys(&self, call: &Call, app_name: &str) -> Result<AppKeyList> {
        let keys = self.issuer.list_keys(call, app_name).await?;
        Ok(AppKeyList {
            app_name: app_name.to_string(),
            keys,
            policy: self.policy,
        })
    }

    async fn revoke(
        &self,
        call: &Call,
        app_name: &str,
        key: &ApiKey,
        why: &str,
    ) -> Result<IssuedKey> {
        // The same locks as a renewal: a renewal in flight on another instance could otherwise
        // make the key it replaces current again in its view, or this revoke a key it hands out.
        let step = self.revoke_locked(call, app_name, key, why);
        self.under_app_locks(call, app_name, true, step).await
    }

    async fn withdraw(&self, call: &Call, app_name: &str, key: &ApiKey) -> Result<()> {
        let step = self.withdraw_locked(call, app_name, key);
        self.under_app_locks(call, app_name, true, step).await
    }

    async fn rollback(
        &self,
        call: &Call,
        app_name: &str,
        dry_run: bool,
    ) -> Result<RollbackOutcome> {
        // A dry run changes nothing, so it need not wait for other instances.
        let step = self.rollback_locked(call, app_name, dry_run);
        self.under_app_locks(call, app_name, !dry_run, step).await
    }

    async fn notice_keys(&self, call: &Call, app_name: &str) -> Result<NoticeKeys> {
        let listed = self.issuer.list_keys_with_notices(call, app_name).await?;
        let noticed = listed
            .iter()
            .filter_map(|(k, at)| at.map(|at| (fingerprint(&k.key), at)))
            .collect();
        Ok(NoticeKeys {
            list: AppKeyList {
                app_name: app_name.to_string(),
                keys: listed.into_iter().map(|(k, _)| k).collect(),
                policy: self.policy,
            },
            noticed,
        })
    }

    async fn mark_noticed(
        &self,
        call: &Call,
        app_name: &str,
        key: &ApiKey,
        at: OffsetDateTime,
    ) -> Result<()> {
        // Under the locks, and read again under them: a rollback setting its marks on the
        // same key at once would otherwise lose one of the two (the attributes are replaced
        // as a whole).
        let step = async {
            let listed = self.issuer.list_keys_with_notices(call, app_name).await?;
            let Some((k, None)) = listed.iter().find(|(k, _)| k.key == *key) else {
                return Ok(());
            };
            let marks = KeyMarks {
                pinned_at: k.pinned_at,
                withdrawn_at: k.withdrawn_at,
                noticed_at: Some(at),
            };
            self.issuer.set_marks(call, app_name, key, marks).await?;
            Ok(())
        };
        self.under_app_locks(call, app_name, true, step).await
    }

    fn renewal_policy(&self) -> Option<RenewalPolicy> {
        Some(self.policy)
    }
}

impl Toolkit {
    /// Runs `step` holding `app_name`'s locks: this process's, and with `shared` the renewal
    /// lock every instance shares; released on every path. Every change to an app's keys
    /// outside a renewal (revocation, withdrawal, rollback) takes them, as a renewal does.
    async fn under_app_locks<T>(
        &self,
        call: &Call,
        app_name: &str,
        shared: bool,
        step: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let lock = self.lock_for(app_name);
        let _guard = lock.lock().await;
        let held = match &self.renewal_lock {
            Some(l) if shared => Some(l.hold(call, app_name).await?),
            _ => None,
        };
        let result = step.await;
        if let Some(held) = held {
            held.release().await;
        }
        result
    }

    /// [`KeySource::withdraw`] once the app's locks are held: the key is looked up again, so
    /// only a key the rotator made is ever deleted.
    async fn withdraw_locked(&self, call: &Call, app_name: &str, key: &ApiKey) -> Result<()> {
        let keys = self.issuer.list_keys(call, app_name).await?;
        let Some(found) = keys.iter().find(|c| c.key == *key) else {
            return Ok(());
        };
        if !found.made_by_rotator {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("key {key} of app '{app_name}' was not made by the rotator: consumers may hold it, so it is left in place"),
            ));
        }
        self.issuer.delete_key(call, app_name, key).await?;
        tracing::info!(app = app_name, key = %key, "withdrew a key that was never distributed");
        Ok(())
    }

    /// [`KeySource::rollback`] once the app's locks are held.
    async fn rollback_locked(
        &self,
        call: &Call,
        app_name: &str,
        dry_run: bool,
    ) -> Result<RollbackOutcome> {
        let credentials = self.issuer.list_keys(call, app_name).await?;
        let now = OffsetDateTime::now_utc();
        let step = policy::rollback_step(&credentials, now).map_err(|why| {
            Error::new(
                ErrorKind::Conflict,
                format!("app '{app_name}' cannot be rolled back: {why}"),
            )
            .with_code(NO_PREVIOUS_KEY_CODE)
        })?;
        let (mut restored, mut withdrawn) = (step.restore.clone(), step.withdraw.clone());
        let reactivated = restored.revoked;
        // A pin from an earlier rollback that a later renewal ended pins nothing: pin again.
        let pin = !policy::pin_in_force(step.restore, &credentials, now);
        if dry_run || step.done_before {
            return Ok(RollbackOutcome {
                restored,
                withdrawn,
                reactivated,
                done_before: step.done_before,
            });
        }
        // Reactivate, pin, withdraw: after any prefix of these the app still has a valid
        // current key (the bad one until the pin, the restored one from it on) and the bad key
        // stays valid for consumers that hold it; the next rollback sees the pin and finishes.
        if restored.revoked {
            restored = self
                .issuer
                .reactivate_key(call, app_name, &restored.key)
                .await?;
            tracing::info!(app = app_name, key = %restored.key, "reactivated the key a rollback restores");
        }
        if pin {
            restored = self
                .issuer
                .set_marks(
                    call,
                    app_name,
                    &restored.key,
                    issuer::KeyMarks {
                        pinned_at: Some(now),
                        withdrawn_at: None,
                        ..issuer::KeyMarks::default()
                    },
                )
                .await?;
        }
        if withdrawn.withdrawn_at.is_none() {
            withdrawn = self
                .issuer
                .set_marks(
                    call,
                    app_name,
                    &withdrawn.key,
                    issuer::KeyMarks {
                        pinned_at: None,
                        withdrawn_at: Some(now),
                        ..issuer::KeyMarks::default()
                    },
                )
                .await?;
        }
        tracing::info!(app = app_name, restored = %restored.key, withdrawn = %withdrawn.key, "rolled back");
        Ok(RollbackOutcome {
            restored,
            withdrawn,
            reactivated,
            done_before: false,
        })
    }

    /// [`KeySource::revoke`] once the app's locks are held.
    async fn revoke_locked(
        &self,
        call: &Call,
        app_name: &str,
        key: &ApiKey,
        why: &str,
    ) -> Result<IssuedKey> {
        let credentials = self.issuer.list_keys(call, app_name).await?;
        let now = OffsetDateTime::now_utc();
        let Some(found) = credentials.iter().find(|c| c.key == *key) else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("app '{app_name}' has no key {key}"),
            ));
        };
        if found.revoked {
            return Ok(found.clone());
        }
        policy::may_revoke(found, &credentials, now).map_err(|refusal| {
            Error::new(
                ErrorKind::Conflict,
                format!(
                    "key {key} of app '{app_name}' was not revoked: {}",
                    refusal.describe()
                ),
            )
            .with_code(NOT_REVOCABLE_CODE)
        })?;
        let revoked = self.issuer.revoke_key(call, app_name, key).await?;
        tracing::info!(app = app_name, key = %revoked.key, why, "revoked a superseded key");
        Ok(revoked)
    }

    /// One pass: read the app's keys, finish or remove half-made ones, decide, renew. Returns
    /// [`Attempt::NeedsLock`] instead of changing anything when a renewal lock is configured
    /// and `locked` is false.
    async fn attempt(
        &self,
        call: &Call,
        app_name: &str,
        request: KeyRequest,
        locked: bool,
    ) -> Result<Attempt> {
        let must_lock = !locked && !request.dry_run && self.renewal_lock.is_some();
        let mut credentials = self.issuer.list_keys(call, app_name).await?;
        let now = OffsetDateTime::now_utc();
        let unfinished = credentials
            .iter()
            .filter(|c| policy::recovery(c, &credentials, now).is_some())
            .count();
        if must_lock && unfinished > 0 {
            return Ok(Attempt::NeedsLock);
        }
        let finished = if request.dry_run {
            Vec::new()
        } else {
            self.recover(call, app_name, &mut credentials, now).await?
        };
        // A finished key that is now current is the new key an interrupted renewal meant to
        // make: it is handed out as renewed, and a repeated force does not make another one.
        if let Some(c) =
            policy::current_key(&credentials, now).filter(|c| finished.contains(&c.key))
        {
            let message = format!(
                "Finished key {} of app '{app_name}' ({}), which an earlier run created but could not complete; the previous key stays valid until its own expiry.",
                c.key,
                describe_expiry(c.expires_at, now),
            );
            return Ok(Attempt::Done(grant(app_name, c.clone(), true, message)));
        }
        let pending_note = if request.dry_run && unfinished > 0 {
            format!(" {unfinished} unfinished key(s) left by an earlier run would be finished or removed.")
        } else {
            String::new()
        };
        let decision = self
            .policy
            .decide(&credentials, now, request.force)
            .map_err(|e| {
                if e.kind() == ErrorKind::NotFound {
                    Error::new(
                        ErrorKind::NotFound,
                        format!("App '{app_name}' has no key in the API manager to renew: create one there first, with the API products it needs"),
                    )
                    .with_code(e.code().to_string())
                } else {
                    e
                }
            })?;
        match decision {
            Decision::Keep(c) => {
                let message = format!(
                    "Key {} of app '{app_name}' {}; no renewal needed (renewal window {} days).{pending_note}",
                    c.key,
                    describe_expiry(c.expires_at, now),
                    self.policy.renew_before_expiry_days
                );
                Ok(Attempt::Done(grant(app_name, c, false, message)))
            }
            Decision::Renew {
                products,
                reason,
                current,
            } => {
                if reason == RenewReason::Forced {
                    self.check_force_interval(app_name, current.as_ref(), now)?;
                }
                let why = describe_reason(&reason, &self.policy, current.as_ref());
                if request.dry_run {
                    // Without a usable key there is nothing current to show; the latest
                    // credential at least tells the caller which key consumers hold now.
                    let shown = current.or_else(|| {
                        credentials
                            .iter()
                            .filter(|c| !c.unfinished)
                            .max_by_key(|c| (c.issued_at, c.expires_at.is_none(), c.expires_at))
                            .cloned()
                    });
                    let shown = shown.ok_or_else(|| Error::unexpected("no credential to show"))?;
                    let message = format!(
                        "Dry run: would create a new key for app '{app_name}' valid for {} days because {why}; nothing was changed.{pending_note}",
                        self.policy.new_key_lifetime_days
                    );
                    return Ok(Attempt::Done(grant(app_name, shown, true, message)));
                }
                if must_lock {
                    return Ok(Attempt::NeedsLock);
                }
                let key = generate_key();
                let lifetime = new_key_lifetime(&self.policy, &reason, current.as_ref(), now);
                let created = self
                    .issuer
                    .create_key(
                        call,
                        app_name,
                        &key,
                        lifetime,
                        &products,
                        current.as_ref().map(|c| &c.key),
                    )
                    .await?;
                tracing::info!(app = app_name, key = %created.key, "created a new API key");
                let message = format!(
                    "Created key {} for app '{app_name}' ({}) because {why}; the previous key stays valid until its own expiry.",
                    created.key,
                    describe_expiry(created.expires_at, now),
                );
                Ok(Attempt::Done(grant(app_name, created, true, message)))
            }
        }
    }

    /// Refuses a forced renewal that would replace a key issued less than the force interval
    /// ago: a caller with the function key must not be able to mint keys without limit (each
    /// lives for the whole key lifetime).
    fn check_force_interval(
        &self,
        app_name: &str,
        current: Option<&IssuedKey>,
        now: OffsetDateTime,
    ) -> Result<()> {
        let Some(issued) = current.and_then(|c| c.issued_at) else {
            return Ok(());
        };
        let age = now - issued;
        if self.force_interval.is_zero() || age >= self.force_interval {
            return Ok(());
        }
        let wait = self.force_interval - age;
        let key = current.map(|c| c.key.to_string()).unwrap_or_default();
        Err(Error::new(
            ErrorKind::RateLimited,
            format!(
                "forced renewal of app '{app_name}' refused: its current key {key} was issued {} minute(s) ago, and a forced renewal may replace a key only {} minute(s) after it was issued ({FORCE_INTERVAL_SETTING}); try again in {} minute(s)",
                age.whole_minutes(),
                self.force_interval.whole_minutes(),
                wait.whole_minutes() + 1
            ),
        )
        .with_code(FORCE_LIMITED_CODE)
        .with_retry_after(Some(std::time::Duration::from_secs(
            wait.whole_seconds().max(1) as u64,
        ))))
    }
}

/// The lifetime of a new key: the policy's, except that a forced (emergency) renewal must
/// outlive the key it replaces, or that key, having the later expiry, would stay the current
/// one and the rotation would push the compromised key again. Replacing a never-expiring key
/// therefore gives a never-expiring key.
fn new_key_lifetime(
    policy: &RenewalPolicy,
    reason: &RenewReason,
    current: Option<&IssuedKey>,
    now: OffsetDateTime,
) -> Option<time::Duration> {
    let lifetime = policy.new_key_lifetime();
    match (reason, current) {
        (RenewReason::Forced, Some(c)) => c
            .expires_at
            .map(|exp| lifetime.max(exp - now + time::Duration::minutes(1))),
        _ => Some(lifetime),
    }
}

/// The key source the settings select: a [`remote::RemoteToolkit`] when `TOOLKIT_APP_URL` is
/// set, otherwise the in-process [`Toolkit`].
pub fn key_source(settings: &Settings, http: reqwest::Client) -> Result<Arc<dyn KeySource>> {
    key_source_with_lock(settings, http, None)
}

/// [`key_source`], whose in-process toolkit renews each app only under `renewal_lock`.
pub fn key_source_with_lock(
    settings: &Settings,
    http: reqwest::Client,
    renewal_lock: Option<Arc<dyn RenewalLock>>,
) -> Result<Arc<dyn KeySource>> {
    if let Some(remote) = remote::RemoteToolkit::from_settings(settings, http.clone()) {
        return Ok(Arc::new(remote));
    }
    if settings.get(TOOLKIT_APP_URL).is_some() {
        // Set but rejected by settings validation: falling back to in-process would silently
        // use other credentials than the operator intended.
        let problem = settings
            .problems()
            .iter()
            .find(|p| p.setting == TOOLKIT_APP_URL)
            .map(|p| p.to_string())
            .unwrap_or_else(|| format!("{TOOLKIT_APP_URL}: invalid"));
        return Err(Error::config(problem));
    }
    Ok(Arc::new(
        Toolkit::from_settings(settings, http)?.with_renewal_lock(renewal_lock),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Calls of the unit tests: the default policy, no deadline.
    fn call() -> Call {
        Call::new(Arc::new(crate::azure::retry::RetryPolicy::default()), None)
    }
    use std::sync::Mutex;
    use time::Duration;

    /// An in-memory issuer that records what it was asked to create.
    /// (key, lifetime, products) of each key the fake issuer created.
    type Created = (String, Option<time::Duration>, Vec<String>);

    #[derive(Default)]
    struct FakeIssuer {
        creds: Mutex<Vec<IssuedKey>>,
        created: Mutex<Vec<Created>>,
        /// (key, products) of each finish_key call.
        finished: Mutex<Vec<(String, Vec<String>)>>,
        deleted: Mutex<Vec<String>>,
        /// (key, marks) of each set_marks call; the notice marks by key.
        marked: Mutex<Vec<(String, KeyMarks)>>,
        noticed: Mutex<HashMap<String, OffsetDateTime>>,
    }

    fn approved(products: &[String]) -> Vec<ProductAssociation> {
        products
            .iter()
            .map(|p| ProductAssociation {
                product: p.clone(),
                status: AssociationStatus::Approved,
            })
            .collect()
    }

    #[async_trait]
    impl Issuer for FakeIssuer {
        async fn list_keys(&self, _: &Call, app_name: &str) -> Result<Vec<IssuedKey>> {
            if app_name != "app1" {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    "API manager does not know app",
                ));
            }
            Ok(self.creds.lock().unwrap().clone())
        }
        async fn create_key(
            &self,
            _: &Call,
            _app: &str,
            key: &ApiKey,
            lifetime: Option<time::Duration>,
            products: &[String],
            replaces: Option<&ApiKey>,
        ) -> Result<IssuedKey> {
            let now = OffsetDateTime::now_utc();
            let c = IssuedKey {
                key: key.clone(),
                issued_at: Some(now),
                expires_at: lifetime.map(|l| now + l),
                approved: true,
                api_products: approved(products),
                unfinished: false,
                made_by_rotator: true,
                revoked: false,
                replaces: replaces.map(fingerprint),
                pinned_at: None,
                withdrawn_at: None,
            };
            self.creds.lock().unwrap().push(c.clone());
            self.created.lock().unwrap().push((
                key.expose().to_string(),
                lifetime,
                products.to_vec(),
            ));
            Ok(c)
        }
        async fn finish_key(
            &self,
            _: &Call,
            _app: &str,
            key: &ApiKey,
            products: &[String],
        ) -> Result<IssuedKey> {
            let mut creds = self.creds.lock().unwrap();
            let c = creds.iter_mut().find(|c| c.key == *key).unwrap();
            c.api_products = approved(products);
            c.unfinished = false;
            self.finished
                .lock()
                .unwrap()
                .push((key.expose().to_string(), products.to_vec()));
            Ok(c.clone())
        }
        async fn delete_key(&self, _: &Call, _app: &str, key: &ApiKey) -> Result<()> {
            self.creds.lock().unwrap().retain(|c| c.key != *key);
            self.deleted.lock().unwrap().push(key.expose().to_string());
            Ok(())
        }
        async fn revoke_key(&self, _: &Call, _app: &str, key: &ApiKey) -> Result<IssuedKey> {
            let mut creds = self.creds.lock().unwrap();
            let c = creds.iter_mut().find(|c| c.key == *key).unwrap();
            c.approved = false;
            c.revoked = true;
            Ok(c.clone())
        }
        async fn set_marks(
            &self,
            _: &Call,
            _app: &str,
            key: &ApiKey,
            marks: KeyMarks,
        ) -> Result<IssuedKey> {
            let mut creds = self.creds.lock().unwrap();
            let c = creds.iter_mut().find(|c| c.key == *key).unwrap();
            c.pinned_at = marks.pinned_at;
            c.withdrawn_at = marks.withdrawn_at;
            let mut noticed = self.noticed.lock().unwrap();
            match marks.noticed_at {
                Some(at) => noticed.insert(key.expose().to_string(), at),
                None => noticed.remove(key.expose()),
            };
            self.marked
                .lock()
                .unwrap()
                .push((key.expose().to_string(), marks));
            Ok(c.clone())
        }
        async fn list_keys_with_notices(
            &self,
            call: &Call,
            app_name: &str,
        ) -> Result<Vec<(IssuedKey, Option<OffsetDateTime>)>> {
            let keys = self.list_keys(call, app_name).await?;
            let noticed = self.noticed.lock().unwrap();
            Ok(keys
                .into_iter()
                .map(|k| {
                    let at = noticed.get(k.key.expose()).copied();
                    (k, at)
                })
                .collect())
        }
    }

    fn toolkit_with(expires_in_days: Option<i64>) -> (Arc<FakeIssuer>, Toolkit) {
        let now = OffsetDateTime::now_utc();
        let issuer = Arc::new(FakeIssuer::default());
        issuer.creds.lock().unwrap().push(IssuedKey {
            key: ApiKey::new("OLDKEYOLDKEYOLDKEYOLDKEY0001"),
            issued_at: Some(now - Duration::days(60)),
            expires_at: expires_in_days.map(|d| now + Duration::days(d)),
            approved: true,
            api_products: approved(&["p1".into(), "p2".into()]),
            unfinished: false,
            made_by_rotator: false,
            revoked: false,
            replaces: None,
            pinned_at: None,
            withdrawn_at: None,
        });
        let tk = Toolkit::new(issuer.clone(), RenewalPolicy::default());
        (issuer, tk)
    }

    /// Records each hold and release; the issuer's list count shows the keys were read again.
    #[derive(Default)]
    struct CountingLock {
        holds: Mutex<Vec<String>>,
        releases: Arc<std::sync::atomic::AtomicUsize>,
    }

    struct CountingHeld(Arc<std::sync::atomic::AtomicUsize>);

    #[async_trait]
    impl HeldRenewal for CountingHeld {
        async fn release(self: Box<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[async_trait]
    impl RenewalLock for CountingLock {
        async fn hold(&self, _: &Call, app_name: &str) -> Result<Box<dyn HeldRenewal>> {
            self.holds.lock().unwrap().push(app_name.to_string());
            Ok(Box::new(CountingHeld(self.releases.clone())))
        }
    }

    /// A call that changes nothing takes no shared lock; a renewal takes it once, decides again
    /// under it, and releases it.
    #[tokio::test]
    async fn renewals_take_the_shared_lock_and_decide_again_under_it() {
        let lock = Arc::new(CountingLock::default());
        let (issuer, tk) = toolkit_with(Some(80));
        let tk = tk.with_renewal_lock(Some(lock.clone()));
        let g = tk
            .current_key(&call(), "app1", KeyRequest::default())
            .await
            .unwrap();
        assert!(!g.renewed);
        assert!(lock.holds.lock().unwrap().is_empty());

        let (issuer2, tk2) = toolkit_with(Some(10));
        let tk2 = tk2.with_renewal_lock(Some(lock.clone()));
        let g = tk2
            .current_key(&call(), "app1", KeyRequest::default())
            .await
            .unwrap();
        assert!(g.renewed);
        assert_eq!(*lock.holds.lock().unwrap(), ["app1"]);
        assert_eq!(lock.releases.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(issuer2.created.lock().unwrap().len(), 1);
        assert!(issuer.created.lock().unwrap().is_empty());
        // A dry run decides without the lock.
        let (_, tk3) = toolkit_with(Some(10));
        let tk3 = tk3.with_renewal_lock(Some(lock.clone()));
        let req = KeyRequest {
            force: false,
            dry_run: true,
        };
        // (`renewed` there means "would renew".)
        assert!(tk3.current_key(&call(), "app1", req).await.unwrap().renewed);
        assert_eq!(lock.holds.lock().unwrap().len(), 1);
    }

    /// Another instance renewed while this one waited for the lock: the second read finds the
    /// new key, and no second key is made.
    #[tokio::test]
    async fn a_renewal_done_elsewhere_meanwhile_is_taken_not_repeated() {
        struct RenewsElsewhere(Arc<FakeIssuer>);
        #[async_trait]
        impl RenewalLock for RenewsElsewhere {
            async fn hold(&self, _: &Call, _app: &str) -> Result<Box<dyn HeldRenewal>> {
                // The other instance's renewal, done before ours gets the lock.
                let now = OffsetDateTime::now_utc();
                self.0.creds.lock().unwrap().push(IssuedKey {
                    key: ApiKey::new("OTHERINSTANCEKEYOTHERINSTANCE001"),
                    issued_at: Some(now),
                    expires_at: Some(now + Duration::days(90)),
                    approved: true,
                    api_products: approved(&["p1".into(), "p2".into()]),
                    unfinished: false,
                    made_by_rotator: true,
                    revoked: false,
                    replaces: None,
                    pinned_at: None,
                    withdrawn_at: None,
                });
                Ok(Box::new(CountingHeld(Default::default())))
            }
        }
        let (issuer, tk) = toolkit_with(Some(10));
        let tk = tk.with_renewal_lock(Some(Arc::new(RenewsElsewhere(issuer.clone()))));
        let g = tk
            .current_key(&call(), "app1", KeyRequest::default())
            .await
            .unwrap();
        assert_eq!(g.api_key.expose(), "OTHERINSTANCEKEYOTHERINSTANCE001");
        assert!(issuer.created.lock().unwrap().is_empty());
    }

    /// A forced renewal may not replace a key younger than the interval: 429-like error with
    /// the wait; an older key, or a zero interval, renews.
    #[tokio::test]
    async fn forced_renewals_are_limited_per_app() {
        let force = KeyRequest {
            force: true,
            dry_run: false,
        };
        let (issuer, tk) = toolkit_with(Some(80));
        let first = tk.current_key(&call(), "app1", force).await.unwrap();
        assert!(first.renewed, "the old key was issued 60 days ago");
        let e = tk.current_key(&call(), "app1", force).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert_eq!(e.code(), FORCE_LIMITED_CODE);
        assert!(e.to_string().contains(FORCE_INTERVAL_SETTING), "{e}");
        assert!(!e.to_string().contains(first.api_key.expose()), "{e}");
        let wait = e.retry_after().unwrap();
        assert!(
            wait > std::time::Duration::from_secs(3500)
                && wait <= std::time::Duration::from_secs(3600)
        );
        assert_eq!(issuer.created.lock().unwrap().len(), 1);
        let tk = Toolkit::new(issuer.clone(), RenewalPolicy::default())
            .with_force_interval(Duration::ZERO);
        assert!(
            tk.current_key(&call(), "app1", force)
                .await
                .unwrap()
                .renewed
        );
        assert_eq!(issuer.created.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn keeps_a_key_outside_the_window() {
        let (issuer, tk) = toolkit_with(Some(80));
        let g = tk
            .current_key(&call(), "app1", KeyRequest::default())
            .await
            .unwrap();
        assert!(!g.renewed);
        assert_eq!(g.api_key.expose(), "OLDKEYOLDKEYOLDKEYOLDKEY0001");
        assert!(g.message.contains("no renewal needed"), "{}", g.message);
        assert!(!g.message.contains("OLDKEYOLDKEY"), "{}", g.message);
        assert!(issuer.created.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn renews_once_then_returns_the_same_key() {
        let (issuer, tk) = toolkit_with(Some(10));
        let first = tk
            .current_key(&call(), "app1", KeyRequest::default())
            .await
            .unwrap();
        assert!(first.renewed);
        assert_eq!(first.api_key.expose().len(), 32);
        assert!(first
            .api_key
            .expose()
            .chars()
            .all(|c| c.is_ascii_alphanumeric()));
        assert!(
            !first.message.contains(first.api_key.expose()),
            "{}",
            first.message
        );
        let created = issuer.created.lock().unwrap().clone();
        assert_eq!(created.len(), 1);
        assert_eq!(created[0].1, Some(Duration::days(90)));
        assert_eq!(created[0].2, ["p1", "p2"]);

        let second = tk
            .current_key(&call(), "app1", KeyRequest::default())
            .await
            .unwrap();
        assert!(!second.renewed);
        assert_eq!(second.api_key, first.api_key);
        assert_eq!(issuer.created.lock().unwrap().len(), 1);
        // The old key is left alone.
        assert_eq!(issuer.creds.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn dry_run_changes_nothing_and_says_it_would_renew() {
        let (issuer, tk) = toolkit_with(Some(10));
        let req = KeyRequest {
            force: false,
            dry_run: true,
        };
        let g = tk.current_key(&call(), "app1", req).await.unwrap();
        assert!(g.renewed, "a dry run says it would renew");
        assert_eq!(g.api_key.expose(), "OLDKEYOLDKEYOLDKEYOLDKEY0001");
        assert!(
            g.message.contains("would create a new key"),
            "{}",
            g.message
        );
        assert!(issuer.created.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn force_renews_a_never_expiring_key() {
        let (issuer, tk) = toolkit_with(None);
        let req = KeyRequest {
            force: true,
            dry_run: false,
        };
        let g = tk.current_key(&call(), "app1", req).await.unwrap();
        assert!(g.renewed);
        assert!(g.message.contains("forced"), "{}", g.message);
        assert_eq!(issuer.created.lock().unwrap().len(), 1);
        // The replacement must become the current key, so it cannot expire before the old one.
        assert_eq!(issuer.created.lock().unwrap()[0].1, None);
        let again = tk
            .current_key(&call(), "app1", KeyRequest::default())
            .await
            .unwrap();
        assert_eq!(
            again.api_key, g.api_key,
            "the forced key is the current key afterwards"
        );
    }

    #[tokio::test]
    async fn force_outlives_a_long_lived_current_key() {
        let (issuer, tk) = toolkit_with(Some(200));
        let forced = KeyRequest {
            force: true,
            dry_run: false,
        };
        let g = tk.current_key(&call(), "app1", forced).await.unwrap();
        let lifetime = issuer.created.lock().unwrap()[0].1.unwrap();
        assert!(lifetime > Duration::days(200), "{lifetime}");
        let again = tk
            .current_key(&call(), "app1", KeyRequest::default())
            .await
            .unwrap();
        assert_eq!(again.api_key, g.api_key);
    }

    #[tokio::test]
    async fn unknown_app_and_app_without_keys_are_not_found() {
        let (issuer, tk) = toolkit_with(Some(80));
        let e = tk
            .current_key(&call(), "nope", KeyRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        issuer.creds.lock().unwrap().clear();
        let e = tk
            .current_key(&call(), "app1", KeyRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.message().contains("'app1' has no key"), "{e}");
    }

    /// A key an earlier run created but did not finish (here: no products yet).
    fn add_unfinished(issuer: &FakeIssuer, key: &str, expires_in_days: i64) {
        let now = OffsetDateTime::now_utc();
        issuer.creds.lock().unwrap().push(IssuedKey {
            key: ApiKey::new(key),
            issued_at: Some(now - Duration::minutes(5)),
            expires_at: Some(now + Duration::days(expires_in_days)),
            approved: true,
            api_products: vec![],
            unfinished: true,
            made_by_rotator: true,
            revoked: false,
            replaces: None,
            pinned_at: None,
            withdrawn_at: None,
        });
    }

    /// The next run finishes the unfinished key with the current key's products and hands it
    /// out as the renewed key, once: no second key, even when the renewal is forced again.
    #[tokio::test]
    async fn an_unfinished_key_is_finished_and_handed_out_once() {
        let (issuer, tk) = toolkit_with(Some(10));
        add_unfinished(&issuer, "HALFMADEHALFMADEHALFMADE0001", 90);
        let forced = KeyRequest {
            force: true,
            dry_run: false,
        };
        let g = tk.current_key(&call(), "app1", forced).await.unwrap();
        assert!(g.renewed, "{}", g.message);
        assert_eq!(g.api_key.expose(), "HALFMADEHALFMADEHALFMADE0001");
        assert!(g.message.contains("could not complete"), "{}", g.message);
        assert!(!g.message.contains("HALFMADEHALF"), "{}", g.message);
        assert_eq!(
            issuer.finished.lock().unwrap().clone(),
            [(
                "HALFMADEHALFMADEHALFMADE0001".to_string(),
                vec!["p1".to_string(), "p2".to_string()]
            )]
        );
        assert!(issuer.created.lock().unwrap().is_empty());
        let again = tk
            .current_key(&call(), "app1", KeyRequest::default())
            .await
            .unwrap();
        assert!(!again.renewed);
        assert_eq!(again.api_key, g.api_key);
        assert_eq!(issuer.finished.lock().unwrap().len(), 1);
    }

    /// An unfinished key that can never be complete is deleted, and the renewal goes on.
    #[tokio::test]
    async fn an_unfinished_key_that_expired_is_removed() {
        let (issuer, tk) = toolkit_with(Some(10));
        add_unfinished(&issuer, "HALFMADEHALFMADEHALFMADE0002", -1);
        let g = tk
            .current_key(&call(), "app1", KeyRequest::default())
            .await
            .unwrap();
        assert!(g.renewed);
        assert_ne!(g.api_key.expose(), "HALFMADEHALFMADEHALFMADE0002");
        assert_eq!(
            issuer.deleted.lock().unwrap().clone(),
            ["HALFMADEHALFMADEHALFMADE0002"]
        );
        assert_eq!(issuer.created.lock().unwrap().len(), 1);
    }

    /// A dry run touches no unfinished key, never shows one, and says what it would do.
    #[tokio::test]
    async fn a_dry_run_leaves_unfinished_keys_alone() {
        let (issuer, tk) = toolkit_with(Some(80));
        add_unfinished(&issuer, "HALFMADEHALFMADEHALFMADE0003", 90);
        let req = KeyRequest {
            force: false,
            dry_run: true,
        };
        let g = tk.current_key(&call(), "app1", req).await.unwrap();
        assert_eq!(g.api_key.expose(), "OLDKEYOLDKEYOLDKEYOLDKEY0001");
        assert!(g.message.contains("1 unfinished key"), "{}", g.message);
        assert!(issuer.finished.lock().unwrap().is_empty());
        assert!(issuer.deleted.lock().unwrap().is_empty());
    }

    /// A renewal's old key may be revoked (under the shared lock, after a fresh read); the
    /// current key, and a key no rotator key replaces, may not; a revoked key stays revoked.
    #[tokio::test]
    async fn revokes_only_a_key_the_rotator_replaced() {
        let lock = Arc::new(CountingLock::default());
        let (issuer, tk) = toolkit_with(Some(10));
        let tk = tk.with_renewal_lock(Some(lock.clone()));
        let old = ApiKey::new("OLDKEYOLDKEYOLDKEYOLDKEY0001");
        let e = tk.revoke(&call(), "app1", &old, "test").await.unwrap_err();
        assert_eq!(e.code(), NOT_REVOCABLE_CODE, "{e}");
        assert!(e.message().contains("it is the current key"), "{e}");
        assert!(!e.message().contains(old.expose()), "{e}");
        let new = tk
            .current_key(&call(), "app1", KeyRequest::default())
            .await
            .unwrap();
        assert!(new.renewed);
        let created = issuer.creds.lock().unwrap().last().unwrap().clone();
        assert_eq!(created.replaces, Some(fingerprint(&old)));
        let e = tk
            .revoke(&call(), "app1", &new.api_key, "test")
            .await
            .unwrap_err();
        assert_eq!(e.code(), NOT_REVOCABLE_CODE, "{e}");
        let holds_before = lock.holds.lock().unwrap().len();
        let revoked = tk.revoke(&call(), "app1", &old, "test").await.unwrap();
        assert!(revoked.revoked && !revoked.approved);
        assert_eq!(lock.holds.lock().unwrap().len(), holds_before + 1);
        // Idempotent.
        assert!(
            tk.revoke(&call(), "app1", &old, "test")
                .await
                .unwrap()
                .revoked
        );
        // A key nobody replaced.
        let now = OffsetDateTime::now_utc();
        issuer.creds.lock().unwrap().push(IssuedKey {
            key: ApiKey::new("SOMEONEELSESKEYSOMEONEELSE01"),
            issued_at: Some(now - Duration::days(5)),
            expires_at: Some(now + Duration::days(5)),
            approved: true,
            api_products: approved(&["p1".into(), "p2".into()]),
            unfinished: false,
            made_by_rotator: false,
            revoked: false,
            replaces: None,
            pinned_at: None,
            withdrawn_at: None,
        });
        let e = tk
            .revoke(
                &call(),
                "app1",
                &ApiKey::new("SOMEONEELSESKEYSOMEONEELSE01"),
                "test",
            )
            .await
            .unwrap_err();
        assert!(e.message().contains("no key the rotator made"), "{e}");
    }

    #[test]
    fn key_source_selection() {
        let http = reqwest::Client::new();
        let s = |pairs: &[(&str, &str)]| {
            Settings::from_map(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        assert!(key_source(
            &s(&[("TOOLKIT_APP_URL", "https://tk.example/api/ToolkitApp")]),
            http.clone()
        )
        .is_ok());
        let e = key_source(
            &s(&[("TOOLKIT_APP_URL", "http://tk.example/api")]),
            http.clone(),
        )
        .err()
        .unwrap();
        assert!(
            e.to_string()
                .starts_with("TOOLKIT_APP_URL: expected an https URL"),
            "{e}"
        );
        let e = key_source(&s(&[]), http.clone()).err().unwrap();
        assert!(e.to_string().starts_with("COMPANYDETAILS: missing"), "{e}");

        let sealed = sealed::seal(
            sealed::tests::UUID,
            sealed::tests::details_json(serde_json::json!({"boundTo": {"siteName": "func-prd"}}))
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        let e = key_source(
            &s(&[
                ("COMPANYDETAILS", &sealed),
                ("TOOLKITUUID", sealed::tests::UUID),
                ("WEBSITE_SITE_NAME", "func-dev"),
            ]),
            http.clone(),
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("location-bound"), "{e}");
        assert!(key_source(
            &s(&[
                ("COMPANYDETAILS", &sealed),
                ("TOOLKITUUID", sealed::tests::UUID),
                ("WEBSITE_SITE_NAME", "func-prd")
            ]),
            http,
        )
        .is_ok());
    }

    /// `status`'s key list is one read: a due app and a half-made key are listed as they are,
    /// nothing is created, finished or deleted, and no lock is taken.
    #[tokio::test]
    async fn app_keys_lists_and_changes_nothing() {
        let lock = Arc::new(CountingLock::default());
        let (issuer, tk) = toolkit_with(Some(10));
        let tk = tk.with_renewal_lock(Some(lock.clone()));
        issuer.creds.lock().unwrap().push(IssuedKey {
            key: ApiKey::new("HALFMADEHALFMADEHALFMADE0002"),
            issued_at: Some(OffsetDateTime::now_utc()),
            expires_at: None,
            approved: true,
            api_products: Vec::new(),
            unfinished: true,
            made_by_rotator: true,
            revoked: false,
            replaces: None,
            pinned_at: None,
            withdrawn_at: None,
        });
        let list = tk.app_keys(&call(), "app1").await.unwrap();
        assert_eq!(list.keys.len(), 2);
        assert!(list.keys[1].unfinished);
        assert_eq!(list.policy, RenewalPolicy::default());
        assert!(issuer.created.lock().unwrap().is_empty());
        assert!(issuer.finished.lock().unwrap().is_empty());
        assert!(issuer.deleted.lock().unwrap().is_empty());
        assert!(lock.holds.lock().unwrap().is_empty());
        let unknown = tk.app_keys(&call(), "nope").await.unwrap_err();
        assert_eq!(unknown.kind(), ErrorKind::NotFound);
    }

    /// A key source that only hands out keys (a remote ToolkitApp) says clearly that the key
    /// list needs the in-process toolkit.
    #[tokio::test]
    async fn app_keys_needs_the_in_process_toolkit_by_default() {
        struct OnlyCurrent;
        #[async_trait]
        impl KeySource for OnlyCurrent {
            async fn current_key(&self, _: &Call, _: &str, _: KeyRequest) -> Result<KeyGrant> {
                Err(Error::unexpected("not called"))
            }
        }
        let e = OnlyCurrent.app_keys(&call(), "app1").await.unwrap_err();
        assert_eq!(
            (e.kind(), e.code()),
            (ErrorKind::ConfigInvalid, NEEDS_IN_PROCESS_TOOLKIT)
        );
        assert!(e.to_string().contains(TOOLKIT_APP_URL), "{e}");
    }

    /// A key that failed its check is withdrawn under the app's shared lock, only when the
    /// rotator made it; one already gone is withdrawn; a remote ToolkitApp withdraws nothing.
    #[tokio::test]
    async fn withdraw_deletes_only_a_key_the_rotator_made() {
        let lock = Arc::new(CountingLock::default());
        let (issuer, tk) = toolkit_with(Some(10));
        let tk = tk.with_renewal_lock(Some(lock.clone()));
        let g = tk
            .current_key(&call(), "app1", KeyRequest::default())
            .await
            .unwrap();
        assert!(g.renewed);
        tk.withdraw(&call(), "app1", &g.api_key).await.unwrap();
        assert_eq!(*issuer.deleted.lock().unwrap(), [g.api_key.expose()]);
        assert_eq!(
            lock.holds.lock().unwrap().len(),
            2,
            "renewal and withdrawal"
        );
        assert_eq!(lock.releases.load(std::sync::atomic::Ordering::SeqCst), 2);
        // Gone already: nothing to do.
        tk.withdraw(&call(), "app1", &g.api_key).await.unwrap();
        assert_eq!(issuer.deleted.lock().unwrap().len(), 1);
        // The seeded key was not made by the rotator: consumers may hold it.
        let old = ApiKey::new("OLDKEYOLDKEYOLDKEYOLDKEY0001");
        let e = tk.withdraw(&call(), "app1", &old).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(e.to_string().contains("not made by the rotator"), "{e}");
        assert!(!e.to_string().contains(old.expose()), "{e}");
        assert_eq!(issuer.deleted.lock().unwrap().len(), 1);

        struct Remote;
        #[async_trait]
        impl KeySource for Remote {
            async fn current_key(&self, _: &Call, _: &str, _: KeyRequest) -> Result<KeyGrant> {
                Err(Error::unexpected("unused"))
            }
        }
        let e = Remote.withdraw(&call(), "app1", &old).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConfigInvalid);
        assert!(
            e.to_string().contains("needs the in-process toolkit"),
            "{e}"
        );
    }

    /// A notice mark goes on the key under the app's locks with its other marks kept, once:
    /// a key marked already, or gone, is left alone; `notice_keys` reads the marks back by
    /// fingerprint.
    #[tokio::test]
    async fn mark_noticed_keeps_the_other_marks_and_marks_once() {
        let lock = Arc::new(CountingLock::default());
        let (issuer, tk) = toolkit_with(Some(50));
        let tk = tk.with_renewal_lock(Some(lock.clone()));
        let key = ApiKey::new("OLDKEYOLDKEYOLDKEYOLDKEY0001");
        let pinned = OffsetDateTime::now_utc() - Duration::days(3);
        issuer.creds.lock().unwrap()[0].pinned_at = Some(pinned);
        let at = OffsetDateTime::now_utc();
        assert!(tk
            .notice_keys(&call(), "app1")
            .await
            .unwrap()
            .noticed
            .is_empty());
        tk.mark_noticed(&call(), "app1", &key, at).await.unwrap();
        tk.mark_noticed(&call(), "app1", &key, at + Duration::days(1))
            .await
            .unwrap();
        tk.mark_noticed(
            &call(),
            "app1",
            &ApiKey::new("GONEGONEGONEGONEGONE0009"),
            at,
        )
        .await
        .unwrap();
        let marked = issuer.marked.lock().unwrap().clone();
        assert_eq!(marked.len(), 1, "{marked:?}");
        assert_eq!(
            marked[0].1,
            KeyMarks {
                pinned_at: Some(pinned),
                withdrawn_at: None,
                noticed_at: Some(at),
            }
        );
        let read = tk.notice_keys(&call(), "app1").await.unwrap();
        assert_eq!(read.noticed, [(fingerprint(&key), at)]);
        assert_eq!(read.list.keys.len(), 1);
        assert_eq!(
            lock.holds.lock().unwrap().len(),
            3,
            "every mark under the shared renewal lock"
        );
    }
}
