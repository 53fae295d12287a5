//! The run lock: timer, HTTP and command-line runs never overlap (PRODUCT.md §10).
//!
//! Within one process an async mutex refuses a second run at once. Across processes (instances
//! of the function app, a `rotate` on someone's laptop) a lease on a blob in the storage
//! account of `AzureWebJobsStorage` does: finite (60 s), renewed in the background while the
//! run lasts and released at its end, so a crashed holder's lease expires on its own.

use crate::azure::call::Call;
use crate::azure::storage::{
    BlobClient, LeaseOutcome, StorageAccount, StorageIdentity, UserAssigned, STORAGE_SETTING,
};
use crate::error::{Error, ErrorKind};
use crate::settings::Settings;
use azure_core::credentials::TokenCredential;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OwnedMutexGuard;
use tokio::task::JoinHandle;

/// The container holding the lock blobs.
pub const LOCK_CONTAINER: &str = "apikey-rotator-locks";
/// The lease period in production; a crashed holder blocks others at most this long.
pub const LEASE: Duration = Duration::from_secs(60);

/// Why the lock was not taken.
#[derive(Debug)]
pub enum LockError {
    /// Another run holds it; the message says where.
    InProgress(String),
    /// The lock's storage could not be reached or refused the request.
    Failed(Error),
}

/// The lock every run takes before it writes anything.
pub struct RunLock {
    local: Arc<tokio::sync::Mutex<()>>,
    blob: Option<BlobLease>,
}

/// Where the blob lock lives and how long its lease lasts.
#[derive(Clone)]
struct BlobLease {
    client: BlobClient,
    container: String,
    blob: String,
    lease: Duration,
}

impl RunLock {
    /// An in-process lock only (no `AzureWebJobsStorage`).
    pub fn local() -> Self {
        Self {
            local: Default::default(),
            blob: None,
        }
    }

    /// The in-process lock plus a lease of `lease` (15–60 s) on `container/blob`.
    pub fn blob(client: BlobClient, container: &str, blob: &str, lease: Duration) -> Self {
        Self {
            local: Default::default(),
            blob: Some(BlobLease {
                client,
                container: container.into(),
                blob: blob.into(),
                lease,
            }),
        }
    }

    /// The lock the settings ask for: a blob lease when `AzureWebJobsStorage` (or its
    /// identity-based form) is set, else local. The blob is named after the function app
    /// (`WEBSITE_SITE_NAME`), so apps sharing a storage account do not block each other.
    pub fn from_settings(
        settings: &Settings,
        http: Result<&reqwest::Client, Error>,
        credential: Result<Arc<dyn TokenCredential>, Error>,
    ) -> Result<Self, Error> {
        let storage_credential = |identity: StorageIdentity| -> Result<_, Error> {
            let http = http.as_ref().map_err(|e| (*e).clone())?;
            match identity {
                StorageIdentity::Default => credential,
                // The same identity as everywhere else: share its token cache.
                StorageIdentity::ManagedIdentity(Some(UserAssigned::ClientId(id)))
                    if settings.azure_client_id.as_deref() == Some(id.as_str()) =>
                {
                    credential
                }
                StorageIdentity::ManagedIdentity(user_assigned) => {
                    crate::azure::credential::build_managed_identity(
                        settings,
                        http,
                        user_assigned.as_ref().map(UserAssigned::to_sdk),
                    )
                }
                StorageIdentity::ClientSecret {
                    tenant_id,
                    client_id,
                    secret,
                } => crate::azure::credential::build_client_secret(
                    settings,
                    http,
                    &tenant_id,
                    &client_id,
                    secret.expose(),
                ),
            }
        };
        let Some(account) = StorageAccount::from_settings(settings, storage_credential)? else {
            return Ok(Self::local());
        };
        let blob = format!(
            "{}/rotation-run.lock",
            settings
                .site_name
                .as_deref()
                .unwrap_or("apikey-rotator")
                .to_ascii_lowercase()
        );
        Ok(Self::blob(
            BlobClient::new(http?.clone(), account),
            LOCK_CONTAINER,
            &blob,
            LEASE,
        ))
    }

    /// What the report's `lock` field says: `blob lease <account>/<container>/<blob>` or
    /// `local (AzureWebJobsStorage is not set)`.
    pub fn describe(&self) -> String {
        match &self.blob {
            Some(b) => format!(
                "blob lease {}/{}/{}",
                b.client.account().name,
                b.container,
                b.blob
            ),
            None => format!("local ({STORAGE_SETTING} is not set)"),
        }
    }

    /// Takes the lock, or says who holds it. Hold the guard for the whole run and end it with
    /// [`RunGuard::release`]; dropping it (an error or a panic) releases it too, in the
    /// background.
    pub async fn acquire(&self, call: &Call) -> Result<RunGuard, LockError> {
        let local = self.local.clone().try_lock_owned().map_err(|_| {
            LockError::InProgress("another rotation run is in progress in this process".into())
        })?;
        let lease = match &self.blob {
            None => None,
            Some(b) => Some(b.acquire(call).await?),
        };
        Ok(RunGuard {
            _local: local,
            lease,
            call: call.clone(),
        })
    }
}

impl RunLock {
    /// The host storage account's client, when the lock is a blob lease (the audit trail's
    /// blobs live in the same account).
    pub fn blob_client(&self) -> Option<&BlobClient> {
        self.blob.as_ref().map(|b| &b.client)
    }

    /// The per-app renewal leases beside this lock's blob (same account and container), when
    /// the lock is a blob lease: `<site>/renewals/<sha256 of the app name>.lock`.
    pub fn renewal_leases(&self) -> Option<RenewalLeases> {
        let b = self.blob.as_ref()?;
        let site = b.blob.rsplit_once('/').map_or("", |(site, _)| site);
        Some(RenewalLeases {
            client: b.client.clone(),
            container: b.container.clone(),
            prefix: format!("{site}/renewals"),
        })
    }
}

/// One blob lease per app, so two instances never renew the same app at once
/// ([`crate::toolkit::RenewalLock`]).
#[derive(Clone, Debug)]
pub struct RenewalLeases {
    client: BlobClient,
    container: String,
    prefix: String,
}

impl RenewalLeases {
    /// The blob of `app_name`'s lease (app names may hold any character; the hash is a name).
    pub fn blob(&self, app_name: &str) -> String {
        let hex = crate::secret::sha256_hex(app_name.as_bytes());
        format!("{}/{hex}.lock", self.prefix)
    }
}

/// How long an instance waits for another one's renewal of the same app at most, when no run
/// deadline says less (a renewal takes a few calls; a crashed holder's lease expires in 60 s).
const RENEWAL_WAIT: Duration = Duration::from_secs(90);

#[async_trait::async_trait]
impl crate::toolkit::RenewalLock for RenewalLeases {
    async fn hold(
        &self,
        call: &Call,
        app_name: &str,
    ) -> crate::error::Result<Box<dyn crate::toolkit::HeldRenewal>> {
        let lock = RunLock::blob(
            self.client.clone(),
            &self.container,
            &self.blob(app_name),
            LEASE,
        );
        let give_up = std::time::Instant::now() + RENEWAL_WAIT;
        let give_up = call.deadline().map_or(give_up, |d| d.min(give_up));
        loop {
            match lock.acquire(call).await {
                Ok(guard) => return Ok(Box::new(guard)),
                Err(LockError::Failed(e)) => {
                    return Err(e.with_context("app", app_name.to_string()));
                }
                Err(LockError::InProgress(_)) if std::time::Instant::now() < give_up => {
                    tracing::info!(
                        app = app_name,
                        "another instance is renewing this app; waiting"
                    );
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(LockError::InProgress(_)) => {
                    return Err(Error::new(
                        ErrorKind::Unavailable,
                        format!("another instance has been renewing app '{app_name}' for longer than this call can wait; its key is unchanged here, and the next run takes the renewed key"),
                    )
                    .with_code("RenewalInProgress")
                    .set_temporary(true));
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl crate::toolkit::HeldRenewal for RunGuard {
    async fn release(self: Box<Self>) {
        let call = self.call.clone();
        if let Some(note) = RunGuard::release(*self, &call).await {
            tracing::warn!("{note}");
        }
    }
}

impl BlobLease {
    fn location(&self) -> String {
        format!(
            "{}/{}/{}",
            self.client.account().name,
            self.container,
            self.blob
        )
    }

    async fn acquire(&self, call: &Call) -> Result<HeldLease, LockError> {
        let seconds = self.lease.as_secs() as i32;
        let proposed = uuid::Uuid::new_v4().to_string();
        let failed = |e: Error| LockError::Failed(e.with_context("lock", self.location()));
        let mut outcome = self
            .client
            .acquire_lease(call, &self.container, &self.blob, seconds, &proposed)
            .await;
        if matches!(&outcome, Err(e) if e.kind() == ErrorKind::NotFound) {
            // The first run on this account: create the container and the blob, then retry.
            self.client
                .create_container(call, &self.container)
                .await
                .map_err(failed)?;
            self.client
                .create_empty_blob_if_missing(call, &self.container, &self.blob)
                .await
                .map_err(failed)?;
            outcome = self
                .client
                .acquire_lease(call, &self.container, &self.blob, seconds, &proposed)
                .await;
        }
        let id = match outcome.map_err(failed)? {
            LeaseOutcome::Acquired(id) => id,
            LeaseOutcome::AlreadyLeased => {
                return Err(LockError::InProgress(format!(
                    "another rotation run holds the lease on {}; try again when it has finished (the lease of a run that crashed expires within {} s)",
                    self.location(),
                    seconds
                )))
            }
        };
        tracing::info!(lock = %self.location(), "lease acquired");
        let lost = Arc::new(Mutex::new(None));
        // Renewals go on in the background for as long as the run holds the lock: the run's
        // deadline does not bound them (the release stops them).
        let renewer = tokio::spawn(renew(
            self.clone(),
            id.clone(),
            lost.clone(),
            call.with_deadline(None),
        ));
        Ok(HeldLease {
            lease: self.clone(),
            id,
            renewer,
            lost,
        })
    }
}

/// Renews every third of the lease period; a failure is remembered for the report, and a lease
/// another holder took over (409/412) stops the renewals.
async fn renew(lease: BlobLease, id: String, lost: Arc<Mutex<Option<String>>>, call: Call) {
    let every = lease.lease / 3;
    loop {
        tokio::time::sleep(every).await;
        match lease
            .client
            .renew_lease(&call, &lease.container, &lease.blob, &id)
            .await
        {
            Ok(()) => tracing::debug!(lock = %lease.location(), "run lock renewed"),
            Err(e) => {
                tracing::error!(lock = %lease.location(), code = e.code(), "cannot renew the run lock: {e}");
                *lost.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!(
                    "The run lock's lease on {} could not be renewed ({e}); another run may have overlapped this one.",
                    lease.location()
                ));
                if matches!(
                    e.kind(),
                    ErrorKind::Conflict | ErrorKind::ConditionNotMatch | ErrorKind::NotFound
                ) {
                    return;
                }
            }
        }
    }
}

struct HeldLease {
    lease: BlobLease,
    id: String,
    renewer: JoinHandle<()>,
    lost: Arc<Mutex<Option<String>>>,
}

impl HeldLease {
    async fn release(self, call: Call) -> Option<String> {
        self.renewer.abort();
        let lost = self.lost.lock().unwrap_or_else(|p| p.into_inner()).take();
        let released = self
            .lease
            .client
            .release_lease(&call, &self.lease.container, &self.lease.blob, &self.id)
            .await;
        match released {
            Ok(()) => {
                tracing::info!(lock = %self.lease.location(), "run lock released");
                lost
            }
            Err(e) => {
                tracing::warn!(lock = %self.lease.location(), code = e.code(), "cannot release the run lock: {e}");
                lost.or(Some(format!(
                    "The run lock's lease on {} could not be released ({e}); it expires on its own within {} s.",
                    self.lease.location(),
                    self.lease.lease.as_secs()
                )))
            }
        }
    }
}

/// Proof that this run holds the lock. Release it with [`RunGuard::release`]; a dropped guard
/// releases in the background (error and panic paths).
pub struct RunGuard {
    _local: OwnedMutexGuard<()>,
    lease: Option<HeldLease>,
    /// The call that took the lock (a renewal lease's release follows it).
    call: Call,
}

impl RunGuard {
    /// Stops renewing and releases the lease under `call`. Returns a note for the report when
    /// the lease was lost during the run or could not be released.
    pub async fn release(mut self, call: &Call) -> Option<String> {
        match self.lease.take() {
            Some(lease) => lease.release(call.clone()).await,
            None => None,
        }
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.renewer.abort();
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    // In the background, beyond the run: no deadline.
                    runtime.spawn(lease.release(self.call.with_deadline(None)));
                }
                Err(_) => tracing::warn!(
                    lock = %lease.lease.location(),
                    "run lock dropped outside the runtime; its lease expires on its own"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_lock_refuses_a_second_run_until_the_first_ends() {
        let lock = RunLock::local();
        assert_eq!(lock.describe(), "local (AzureWebJobsStorage is not set)");
        let call = Call::new(Arc::new(crate::azure::retry::RetryPolicy::default()), None);
        let first = lock.acquire(&call).await.expect("free");
        match lock.acquire(&call).await {
            Err(LockError::InProgress(m)) => assert!(m.contains("in progress"), "{m}"),
            other => panic!("expected InProgress, got {:?}", other.map(|_| ())),
        }
        assert_eq!(first.release(&call).await, None);
        let again = lock.acquire(&call).await.expect("free after release");
        drop(again);
        lock.acquire(&call).await.expect("free after drop");
    }

    #[test]
    fn settings_choose_the_lock() {
        let settings = |pairs: &[(&str, &str)]| {
            Settings::from_map(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        let http = reqwest::Client::new();
        let no_credential = || Err(Error::unexpected("unused"));
        let local = RunLock::from_settings(&settings(&[]), Ok(&http), no_credential()).unwrap();
        assert!(local.blob.is_none());
        let blob = RunLock::from_settings(
            &settings(&[
                (STORAGE_SETTING, "UseDevelopmentStorage=true"),
                ("WEBSITE_SITE_NAME", "Func-Rotator"),
            ]),
            Ok(&http),
            no_credential(),
        )
        .unwrap();
        assert_eq!(
            blob.describe(),
            "blob lease devstoreaccount1/apikey-rotator-locks/func-rotator/rotation-run.lock"
        );
        let bad = RunLock::from_settings(
            &settings(&[(STORAGE_SETTING, "AccountName=x")]),
            Ok(&http),
            no_credential(),
        );
        assert!(bad.is_err());
    }
}
