//! A dry run as read-only decorators (in the manner of sccache's `ReadOnlyStorage`): the run
//! goes through its usual steps over containers, vaults and a key source whose reads are the
//! real ones and whose writes are recorded as "would write" and never sent.
//!
//! The engine wraps what a dry run is given ([`super::engine::run`]); nothing below the engine
//! knows about dry runs, except the toolkit, which is asked for a dry run
//! ([`KeyRequest::dry_run`]) and then decides without renewing.

use crate::azure::call::Call;
use crate::error::Result;
use crate::targets::{Container, PlannedContainer, Stored, TargetType, VaultResolver, Write};
use crate::toolkit::{AppKeyList, KeyGrant, KeyRequest, KeySource};
use std::sync::{Arc, Mutex};

/// `plan` with every container read-only.
pub fn read_only(plan: &[PlannedContainer]) -> Vec<PlannedContainer> {
    plan.iter()
        .map(|p| PlannedContainer {
            container: Arc::new(ReadOnlyContainer::new(p.container.clone())),
            entries: p.entries.clone(),
        })
        .collect()
}

/// A container whose reads are `inner`'s and whose writes and reference refreshes are recorded,
/// never sent: each succeeds as the real one would be asked to.
pub struct ReadOnlyContainer {
    inner: Arc<dyn Container>,
    would_write: Mutex<Vec<String>>,
}

impl ReadOnlyContainer {
    /// `inner`, read-only.
    pub fn new(inner: Arc<dyn Container>) -> Self {
        Self {
            inner,
            would_write: Mutex::new(Vec::new()),
        }
    }

    /// The entries a write was asked for (a refreshed reference as `refresh <name>`), in order.
    pub fn would_write(&self) -> Vec<String> {
        self.would_write
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn record(&self, what: impl IntoIterator<Item = String>) {
        let mut seen = self.would_write.lock().unwrap_or_else(|p| p.into_inner());
        for w in what {
            tracing::debug!(target_kind = self.inner.target_type().report_type(), container = self.inner.label(), entry = %w, "dry run: would write");
            seen.push(w);
        }
    }
}

#[async_trait::async_trait]
impl Container for ReadOnlyContainer {
    fn target_type(&self) -> TargetType {
        self.inner.target_type()
    }

    fn label(&self) -> &str {
        self.inner.label()
    }

    async fn read(&self, names: &[String]) -> Vec<Result<Stored>> {
        self.inner.read(names).await
    }

    async fn write(&self, writes: &[Write]) -> Vec<Result<()>> {
        self.record(writes.iter().map(|w| w.name.clone()));
        writes.iter().map(|_| Ok(())).collect()
    }

    async fn references_updated(&self, names: &[String]) -> Result<()> {
        self.record(names.iter().map(|n| format!("refresh {n}")));
        Ok(())
    }
}

/// Finds vaults as `inner` does, each read-only.
pub struct ReadOnlyVaults<'a> {
    inner: &'a dyn VaultResolver,
}

impl<'a> ReadOnlyVaults<'a> {
    /// `inner`'s vaults, read-only.
    pub fn new(inner: &'a dyn VaultResolver) -> Self {
        Self { inner }
    }
}

impl VaultResolver for ReadOnlyVaults<'_> {
    fn vault(&self, vault_url: &url::Url) -> Result<Arc<dyn Container>> {
        let vault = self.inner.vault(vault_url)?;
        Ok(Arc::new(ReadOnlyContainer::new(vault)))
    }
}

/// A key source that never renews: every request to `inner` is a dry run, so the grant says
/// whether the key would be renewed and holds the current key.
pub struct ReadOnlyKeys<'a> {
    inner: &'a dyn KeySource,
}

impl<'a> ReadOnlyKeys<'a> {
    /// `inner`, asked only for dry runs.
    pub fn new(inner: &'a dyn KeySource) -> Self {
        Self { inner }
    }
}

#[async_trait::async_trait]
impl KeySource for ReadOnlyKeys<'_> {
    async fn revoke(
        &self,
        _: &Call,
        app_name: &str,
        key: &crate::secret::ApiKey,
        _why: &str,
    ) -> Result<crate::toolkit::IssuedKey> {
        // The engine plans revocations in a dry run and never asks; refuse if it ever does.
        Err(crate::error::Error::unexpected(format!(
            "a dry run asked to revoke key {key} of app '{app_name}'"
        )))
    }

    async fn current_key(
        &self,
        call: &Call,
        app_name: &str,
        request: KeyRequest,
    ) -> Result<KeyGrant> {
        let request = KeyRequest {
            dry_run: true,
            ..request
        };
        self.inner.current_key(call, app_name, request).await
    }

    /// Listing keys only reads: passed on as it is.
    async fn app_keys(&self, call: &Call, app_name: &str) -> Result<AppKeyList> {
        self.inner.app_keys(call, app_name).await
    }

    /// A rollback in a dry run decides and changes nothing.
    async fn rollback(
        &self,
        call: &Call,
        app_name: &str,
        _dry_run: bool,
    ) -> Result<crate::toolkit::RollbackOutcome> {
        self.inner.rollback(call, app_name, true).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::ApiKey;

    /// Counts what reaches it.
    #[derive(Default)]
    struct Counting {
        reads: Mutex<usize>,
        writes: Mutex<usize>,
        refreshes: Mutex<usize>,
        requests: Mutex<Vec<KeyRequest>>,
    }

    #[async_trait::async_trait]
    impl Container for Counting {
        fn target_type(&self) -> TargetType {
            crate::targets::key_vault::TYPE
        }
        fn label(&self) -> &str {
            "kv"
        }
        async fn read(&self, names: &[String]) -> Vec<Result<Stored>> {
            *self.reads.lock().unwrap() += 1;
            names.iter().map(|_| Ok(Stored::Missing)).collect()
        }
        async fn write(&self, writes: &[Write]) -> Vec<Result<()>> {
            *self.writes.lock().unwrap() += 1;
            writes.iter().map(|_| Ok(())).collect()
        }
        async fn references_updated(&self, _: &[String]) -> Result<()> {
            *self.refreshes.lock().unwrap() += 1;
            Ok(())
        }
    }

    #[async_trait::async_trait]
    impl KeySource for Counting {
        async fn current_key(&self, _: &Call, app: &str, request: KeyRequest) -> Result<KeyGrant> {
            self.requests.lock().unwrap().push(request);
            Ok(KeyGrant {
                app_name: app.into(),
                api_key: ApiKey::new("current-key-0001"),
                issued_at: None,
                expires_at: None,
                renewed: true,
                message: "would renew".into(),
            })
        }
    }

    impl VaultResolver for Arc<Counting> {
        fn vault(&self, _: &url::Url) -> Result<Arc<dyn Container>> {
            Ok(self.clone())
        }
    }

    /// Reads reach the real container; writes and refreshes are recorded and never sent.
    #[tokio::test]
    async fn writes_are_recorded_never_sent() {
        let real = Arc::new(Counting::default());
        let vaults = ReadOnlyVaults::new(&real);
        let vault = vaults
            .vault(&"https://kv.vault.azure.net/".parse().unwrap())
            .unwrap();
        let read_only = ReadOnlyContainer::new(vault);
        assert!(read_only.read(&["a".into()]).await[0].is_ok());
        let write = Write {
            name: "a".into(),
            apim_app_name: "app".into(),
            key: ApiKey::new("new-key-00000001"),
            expires_at: None,
        };
        assert!(read_only.write(&[write]).await[0].is_ok());
        read_only.references_updated(&["b".into()]).await.unwrap();
        assert_eq!(*real.reads.lock().unwrap(), 1);
        assert_eq!(*real.writes.lock().unwrap(), 0, "nothing written");
        assert_eq!(*real.refreshes.lock().unwrap(), 0, "nothing refreshed");
        assert_eq!(read_only.would_write(), ["a", "refresh b"]);
    }

    /// The key source is only ever asked for a dry run, whatever the request said.
    #[tokio::test]
    async fn the_key_source_is_asked_for_dry_runs_only() {
        let real = Counting::default();
        let keys = ReadOnlyKeys::new(&real);
        let call = Call::new(Arc::new(crate::azure::retry::RetryPolicy::default()), None);
        let request = KeyRequest {
            force: true,
            dry_run: false,
        };
        let grant = keys.current_key(&call, "app", request).await.unwrap();
        assert!(grant.renewed);
        let asked = real.requests.lock().unwrap();
        assert!(asked[0].dry_run && asked[0].force, "{asked:?}");
    }
}
