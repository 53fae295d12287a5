//! The renewal policy: which key is current, and whether it must be renewed (PRODUCT.md §6).
//!
//! Pure functions over a list of credentials and a clock reading, so every branch is tested
//! with fixed times.

use super::Credential;
use crate::error::{Error, ErrorKind, Result};
use serde::Deserialize;
use time::{Duration, OffsetDateTime};

/// When to renew, and how long new keys live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct RenewalPolicy {
    /// Renew when the current key expires within this many days.
    pub renew_before_expiry_days: u32,
    /// Lifetime of a newly created key, in days.
    pub new_key_lifetime_days: u32,
}

impl Default for RenewalPolicy {
    fn default() -> Self {
        Self {
            renew_before_expiry_days: 45,
            new_key_lifetime_days: 90,
        }
    }
}

/// Why a new key is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenewReason {
    /// The current key expires inside the renewal window.
    ExpiresSoon {
        /// When the current key expires.
        expires_at: OffsetDateTime,
    },
    /// The caller asked for renewal regardless of the window.
    Forced,
    /// No approved, unexpired key exists; products are copied from the latest credential.
    NoUsableKey,
}

/// What to do for one app.
#[derive(Debug, Clone)]
pub enum Decision {
    /// The current key stays; hand it out.
    Keep(super::Credential),
    /// Create a new key with these API products.
    Renew {
        /// API products of the key being replaced.
        products: Vec<String>,
        /// Why.
        reason: RenewReason,
        /// The key being replaced, when there is a usable one.
        current: Option<super::Credential>,
    },
}

impl RenewalPolicy {
    /// Checks that both durations are positive and that a new key outlives the renewal window
    /// (otherwise every run would renew again).
    pub fn validate(&self) -> Result<()> {
        if self.renew_before_expiry_days == 0 || self.new_key_lifetime_days == 0 {
            return Err(Error::config(
                "renewBeforeExpiryDays and newKeyLifetimeDays must both be at least 1",
            ));
        }
        if self.new_key_lifetime_days <= self.renew_before_expiry_days {
            return Err(Error::config(format!(
                "newKeyLifetimeDays ({}) must be greater than renewBeforeExpiryDays ({}), or every new key would be renewed at once",
                self.new_key_lifetime_days, self.renew_before_expiry_days
            )));
        }
        Ok(())
    }

    /// The renewal window.
    pub fn renew_window(&self) -> Duration {
        Duration::days(self.renew_before_expiry_days.into())
    }

    /// Lifetime of a new key.
    pub fn new_key_lifetime(&self) -> Duration {
        Duration::days(self.new_key_lifetime_days.into())
    }

    /// Decides for one app. Errors with [`ErrorKind::NotFound`] when the app has no credential
    /// at all, since there are no API products to give a new key.
    pub fn decide(
        &self,
        credentials: &[Credential],
        now: OffsetDateTime,
        force: bool,
    ) -> Result<Decision> {
        if let Some(cur) = current_key(credentials, now) {
            let reason = if force {
                Some(RenewReason::Forced)
            } else {
                cur.expires_at
                    .filter(|exp| *exp - now <= self.renew_window())
                    .map(|expires_at| RenewReason::ExpiresSoon { expires_at })
            };
            return Ok(match reason {
                None => Decision::Keep(cur.clone()),
                Some(reason) => Decision::Renew {
                    products: cur.api_products.clone(),
                    reason,
                    current: Some(cur.clone()),
                },
            });
        }
        // Revoked or expired keys still tell which products the app is meant to have.
        let latest = credentials
            .iter()
            .max_by_key(|c| (c.issued_at, c.expires_at.is_none(), c.expires_at));
        match latest {
            Some(c) => Ok(Decision::Renew {
                products: c.api_products.clone(),
                reason: if force {
                    RenewReason::Forced
                } else {
                    RenewReason::NoUsableKey
                },
                current: None,
            }),
            None => Err(
                Error::new(ErrorKind::NotFound, "app has no approved key to renew")
                    .with_code("NoApprovedKey"),
            ),
        }
    }
}

/// The key consumers should use now: approved, unexpired (`None` never expires), latest expiry;
/// ties go to the latest issued.
pub fn current_key(credentials: &[Credential], now: OffsetDateTime) -> Option<&Credential> {
    credentials
        .iter()
        .filter(|c| c.approved && c.expires_at.is_none_or(|exp| exp > now))
        .max_by_key(|c| (c.expires_at.is_none(), c.expires_at, c.issued_at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::ApiKey;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-22 06:00 UTC);

    fn cred(
        key: &str,
        issued_days_ago: i64,
        expires_in_days: Option<i64>,
        approved: bool,
    ) -> Credential {
        Credential {
            key: ApiKey::new(key),
            issued_at: Some(NOW - Duration::days(issued_days_ago)),
            expires_at: expires_in_days.map(|d| NOW + Duration::days(d)),
            approved,
            api_products: vec![format!("product-of-{key}")],
        }
    }

    fn policy() -> RenewalPolicy {
        RenewalPolicy::default()
    }

    #[test]
    fn defaults_and_validation() {
        let p: RenewalPolicy = serde_json::from_str("{}").unwrap();
        assert_eq!(p, policy());
        assert!(p.validate().is_ok());
        let bad = |r, l| {
            RenewalPolicy {
                renew_before_expiry_days: r,
                new_key_lifetime_days: l,
            }
            .validate()
            .unwrap_err()
            .to_string()
        };
        assert!(bad(0, 90).contains("at least 1"));
        assert!(bad(45, 0).contains("at least 1"));
        assert!(bad(45, 45).contains("must be greater than"));
        assert!(serde_json::from_str::<RenewalPolicy>(r#"{"renewDays":1}"#).is_err());
    }

    #[test]
    fn current_key_prefers_never_then_latest_expiry_then_latest_issued() {
        let creds = vec![
            cred("a", 10, Some(100), true),
            cred("b", 5, Some(200), true),
            cred("c", 1, Some(300), false),
            cred("d", 1, Some(-1), true),
        ];
        assert_eq!(current_key(&creds, NOW).unwrap().key.expose(), "b");

        let mut with_never = creds.clone();
        with_never.push(cred("n", 50, None, true));
        assert_eq!(current_key(&with_never, NOW).unwrap().key.expose(), "n");

        let tie = vec![
            cred("old", 9, Some(200), true),
            cred("new", 2, Some(200), true),
        ];
        assert_eq!(current_key(&tie, NOW).unwrap().key.expose(), "new");

        let expired_exactly_now = vec![cred("x", 9, Some(0), true)];
        assert!(current_key(&expired_exactly_now, NOW).is_none());
    }

    #[test]
    fn keeps_a_key_outside_the_window() {
        let creds = vec![cred("a", 10, Some(46), true)];
        match policy().decide(&creds, NOW, false).unwrap() {
            Decision::Keep(c) => assert_eq!(c.key.expose(), "a"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn keeps_a_never_expiring_key() {
        let creds = vec![cred("a", 10, None, true)];
        assert!(matches!(
            policy().decide(&creds, NOW, false).unwrap(),
            Decision::Keep(_)
        ));
    }

    #[test]
    fn renews_inside_the_window_with_the_current_products() {
        let creds = vec![
            cred("a", 10, Some(45), true),
            cred("old", 100, Some(-5), true),
        ];
        match policy().decide(&creds, NOW, false).unwrap() {
            Decision::Renew {
                products,
                reason,
                current,
            } => {
                assert_eq!(products, ["product-of-a"]);
                assert_eq!(
                    reason,
                    RenewReason::ExpiresSoon {
                        expires_at: NOW + Duration::days(45)
                    }
                );
                assert_eq!(current.unwrap().key.expose(), "a");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn force_renews_even_a_never_expiring_key() {
        let creds = vec![cred("a", 10, None, true)];
        match policy().decide(&creds, NOW, true).unwrap() {
            Decision::Renew {
                products, reason, ..
            } => {
                assert_eq!(products, ["product-of-a"]);
                assert_eq!(reason, RenewReason::Forced);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_usable_key_copies_products_from_the_latest_credential() {
        let creds = vec![
            cred("revoked", 3, Some(300), false),
            cred("expired", 200, Some(-10), true),
        ];
        match policy().decide(&creds, NOW, false).unwrap() {
            Decision::Renew {
                products,
                reason,
                current,
            } => {
                assert_eq!(products, ["product-of-revoked"]);
                assert_eq!(reason, RenewReason::NoUsableKey);
                assert!(current.is_none());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_credentials_at_all_is_not_found() {
        let e = policy().decide(&[], NOW, true).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.message(), "app has no approved key to renew");
    }
}
