//! Rollback (issue 15, point 5): make the key an app's current key replaced current again,
//! redistribute it, and withdraw the bad key.
//!
//! The key step is the toolkit's ([`KeySource::rollback`]: reactivate, withdraw, pin, each a
//! mark on the keys themselves, so the state cannot drift from the API manager). What follows
//! is an ordinary run for the app, under the run lock: the restored key is the current one now,
//! so the engine writes it wherever it differs, and the withdrawn key is revoked only once every
//! target holds the restored one. A rollback interrupted anywhere is finished by the next
//! rollback or run: both see the same marks.
//!
//! A dry run decides without changing anything, then plans the run as if the rollback were done
//! ([`Restored`]): which targets would get the restored key.

use super::report::ReportEntry;
use crate::azure::call::Call;
use crate::error::Result;
use crate::toolkit::{AppKeyList, KeyGrant, KeyRequest, KeySource, RollbackOutcome};

/// The report's entry type of the rollback step.
pub const ROLLBACK: &str = "ROLLBACK";

/// The report entry of a rollback step that succeeded (or, in a dry run, would).
pub fn entry(app: &str, outcome: &RollbackOutcome, dry_run: bool) -> ReportEntry {
    let (restored, withdrawn) = (&outcome.restored.key, &outcome.withdrawn.key);
    let message = if outcome.done_before {
        format!(
            "App '{app}' was rolled back already: key {restored} is current (pinned), key {withdrawn} is withdrawn; nothing changed in the API manager, and every target is checked again."
        )
    } else if dry_run {
        format!(
            "Would roll back app '{app}': {}make key {restored} current again and withdraw key {withdrawn}; the targets below would get {restored}, and {withdrawn} would be revoked once every target holds {restored}.",
            if outcome.reactivated {
                format!("reactivate key {restored} (it is revoked), ")
            } else {
                String::new()
            }
        )
    } else {
        format!(
            "Rolled back app '{app}': key {restored}{} is current again and key {withdrawn} is withdrawn; {withdrawn} is revoked once every target holds {restored}.",
            if outcome.reactivated {
                " (reactivated)"
            } else {
                ""
            }
        )
    };
    ReportEntry::new(ROLLBACK, app, "", message).with_key(restored)
}

/// A key source for a dry-run rollback: `app`'s current key is the key the rollback would
/// restore; every other request goes to `inner` as it is.
pub struct Restored<'a> {
    inner: &'a dyn KeySource,
    app: String,
    outcome: RollbackOutcome,
}

impl<'a> Restored<'a> {
    /// `inner`, with `app`'s rollback `outcome` taken as done.
    pub fn new(inner: &'a dyn KeySource, app: &str, outcome: RollbackOutcome) -> Self {
        Self {
            inner,
            app: app.to_string(),
            outcome,
        }
    }
}

#[async_trait::async_trait]
impl KeySource for Restored<'_> {
    async fn current_key(
        &self,
        call: &Call,
        app_name: &str,
        request: KeyRequest,
    ) -> Result<KeyGrant> {
        if app_name != self.app {
            return self.inner.current_key(call, app_name, request).await;
        }
        let key = &self.outcome.restored;
        Ok(KeyGrant {
            app_name: app_name.to_string(),
            api_key: key.key.clone(),
            issued_at: key.issued_at,
            expires_at: key.expires_at,
            renewed: false,
            message: format!(
                "Dry run: key {} would be current again after the rollback.",
                key.key
            ),
        })
    }

    async fn app_keys(&self, call: &Call, app_name: &str) -> Result<AppKeyList> {
        self.inner.app_keys(call, app_name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::ApiKey;
    use crate::toolkit::IssuedKey;

    fn key(k: &str) -> IssuedKey {
        IssuedKey {
            key: ApiKey::new(k),
            issued_at: None,
            expires_at: None,
            approved: true,
            api_products: Vec::new(),
            unfinished: false,
            made_by_rotator: true,
            revoked: false,
            replaces: None,
            pinned_at: None,
            withdrawn_at: None,
        }
    }

    /// Each wording names both keys redacted, never in full, and says what is (would be) done.
    #[test]
    fn entries_say_what_happened_with_redacted_keys() {
        let outcome = RollbackOutcome {
            restored: key("RESTOREDRESTOREDRESTORED0001"),
            withdrawn: key("WITHDRAWNWITHDRAWNWITHDR0002"),
            reactivated: true,
            done_before: false,
        };
        let done = entry("app1", &outcome, false);
        assert_eq!(done.kind, ROLLBACK);
        assert!(done
            .message
            .contains("****0001 (reactivated) is current again"));
        assert!(done.message.contains("****0002 is withdrawn"));
        let planned = entry("app1", &outcome, true);
        assert!(planned
            .message
            .starts_with("Would roll back app 'app1': reactivate"));
        let again = entry(
            "app1",
            &RollbackOutcome {
                done_before: true,
                ..outcome.clone()
            },
            false,
        );
        assert!(again.message.contains("rolled back already"));
        for e in [done, planned, again] {
            assert!(!e.message.contains("RESTOREDRESTORED"), "{}", e.message);
            assert!(!e.message.contains("WITHDRAWNWITHDRAWN"), "{}", e.message);
            assert_eq!(e.api_key.as_deref(), Some("****0001"));
        }
    }
}
