//! The renewal policy: which key is current, and whether it must be renewed (PRODUCT.md §6).
//!
//! Pure functions over a list of credentials and a clock reading, so every branch is tested
//! with fixed times.

use super::{AssociationStatus, IssuedKey};
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
    /// No complete, unexpired key exists; products are copied as [`products_to_copy`] says.
    NoUsableKey,
}

/// What to do for one app.
#[derive(Debug, Clone)]
pub enum Decision {
    /// The current key stays; hand it out.
    Keep(super::IssuedKey),
    /// Create a new key with these API products.
    Renew {
        /// API products of the key being replaced.
        products: Vec<String>,
        /// Why.
        reason: RenewReason,
        /// The key being replaced, when there is a usable one.
        current: Option<super::IssuedKey>,
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

    /// The renewal window of `current`, the current key of `credentials`: the policy's, or
    /// for a key a rollback pinned the shorter of it and [`PINNED_RENEWAL_FLOOR`]. A key
    /// a rollback made current again was due when its successor was made: the window alone
    /// would renew it on the next run and undo the rollback, so a pin holds the window's
    /// renewals off until a forced renewal or the floor (a lapsed key breaks every consumer).
    pub fn window_for(
        &self,
        current: &IssuedKey,
        credentials: &[IssuedKey],
        now: OffsetDateTime,
    ) -> Duration {
        if pin_in_force(current, credentials, now) {
            self.renew_window().min(PINNED_RENEWAL_FLOOR)
        } else {
            self.renew_window()
        }
    }

    /// Decides for one app. Errors with [`ErrorKind::NotFound`] when no key tells which API
    /// products a new key needs (no key with an approved product at all).
    pub fn decide(
        &self,
        credentials: &[IssuedKey],
        now: OffsetDateTime,
        force: bool,
    ) -> Result<Decision> {
        if let Some(cur) = current_key(credentials, now) {
            let window = self.window_for(cur, credentials, now);
            let reason = if force {
                Some(RenewReason::Forced)
            } else {
                cur.expires_at
                    .filter(|exp| *exp - now <= window)
                    .map(|expires_at| RenewReason::ExpiresSoon { expires_at })
            };
            return Ok(match reason {
                None => Decision::Keep(cur.clone()),
                Some(reason) => Decision::Renew {
                    products: cur.approved_products().map(str::to_string).collect(),
                    reason,
                    current: Some(cur.clone()),
                },
            });
        }
        match products_to_copy(credentials, now) {
            Some(products) => Ok(Decision::Renew {
                products,
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

/// How close to its expiry a key pinned by a rollback is renewed anyway, without a forced
/// renewal (the renewal window applies instead when it is shorter).
pub const PINNED_RENEWAL_FLOOR: Duration = Duration::days(7);

/// What to do with a key the rotator created but did not finish (PRODUCT.md §6: such keys are
/// completed or removed on the next run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// Attach these products (those it lacks) and approve its pending associations with them.
    Finish {
        /// The approved products of the key it was made to replace.
        products: Vec<String>,
    },
    /// Delete it: it can never become complete. It was never current, so no consumer holds it.
    Remove {
        /// Why, for the log.
        why: &'static str,
    },
}

/// Decides for one key of an app whose keys are `credentials`: `None` unless it is a key the
/// rotator created and did not finish — its products not attached ([`IssuedKey::unfinished`]),
/// or attached but a pending association with one of the products it needs (the approval was
/// interrupted) on a key issued after the current one. Such a key is finished only while
/// finishing it gives what the rotator meant to make: the key itself approved and unexpired,
/// no association refused (revoked) by someone, and a complete key (or at least a key with
/// approved products) telling which products it needs.
pub fn recovery(
    key: &IssuedKey,
    credentials: &[IssuedKey],
    now: OffsetDateTime,
) -> Option<Recovery> {
    let needed = products_to_copy(credentials, now);
    if !key.unfinished {
        let current = current_key(credentials, now);
        let interrupted = key.made_by_rotator
            && current.is_none_or(|cur| cur.key != key.key && key.issued_at > cur.issued_at)
            && needed.as_ref().is_some_and(|needed| {
                key.api_products
                    .iter()
                    .any(|a| a.status == AssociationStatus::Pending && needed.contains(&a.product))
            });
        if !interrupted {
            return None;
        }
    }
    if !key.approved {
        return Some(Recovery::Remove {
            why: "the key is not approved",
        });
    }
    if key.expires_at.is_some_and(|exp| exp <= now) {
        return Some(Recovery::Remove {
            why: "the key has expired",
        });
    }
    if key
        .api_products
        .iter()
        .any(|a| a.status == AssociationStatus::Revoked)
    {
        return Some(Recovery::Remove {
            why: "an API product association of the key was revoked",
        });
    }
    Some(match needed {
        Some(products) => Recovery::Finish { products },
        None => Recovery::Remove {
            why: "no other key tells which API products it needs",
        },
    })
}

/// Whether `c`, on its own, may be complete: approved, finished by the rotator when the
/// rotator made it, and approved for at least one API product (a key without products opens
/// nothing, and copying its empty list would break every later key).
fn complete_alone(c: &IssuedKey) -> bool {
    c.approved && !c.unfinished && c.approved_products().next().is_some()
}

/// The complete keys of an app, in the order they were issued. A key is complete when it is
/// approved (and finished, for a key the rotator made) and approved for every API product the
/// complete key issued before it is approved for (PRODUCT.md §6). Expiry does not matter here:
/// an expired key still tells which products its successor needs. A revoked key is not
/// complete, so it does not bind its successors.
pub fn complete_keys(credentials: &[IssuedKey]) -> Vec<&IssuedKey> {
    let mut by_issue: Vec<&IssuedKey> = credentials.iter().collect();
    by_issue.sort_by_key(|c| (c.issued_at, c.expires_at.is_none(), c.expires_at));
    let mut complete: Vec<&IssuedKey> = Vec::new();
    for c in by_issue {
        if !complete_alone(c) {
            continue;
        }
        let covers_previous = complete
            .last()
            .is_none_or(|prev| prev.approved_products().all(|p| c.is_approved_for(p)));
        if covers_previous {
            complete.push(c);
        }
    }
    complete
}

/// The key consumers should use now: a complete, unexpired key (`None` never expires) that a
/// rollback did not withdraw, with the latest expiry; ties go to the latest issued. A half-made
/// key is never current.
///
/// A pin overrides the expiry rule: a key a rollback pinned ([`IssuedKey::pinned_at`]) is
/// current while no other such key was issued after the pin (the latest pin wins among
/// several). A key issued after the pin (the next renewal) ends it, and the rule above applies
/// again. A pinned key that is no longer usable (expired, revoked) pins nothing.
pub fn current_key(credentials: &[IssuedKey], now: OffsetDateTime) -> Option<&IssuedKey> {
    let usable: Vec<&IssuedKey> = complete_keys(credentials)
        .into_iter()
        .filter(|c| c.expires_at.is_none_or(|exp| exp > now) && c.withdrawn_at.is_none())
        .collect();
    let pinned = usable
        .iter()
        .filter_map(|c| c.pinned_at.map(|at| (at, *c)))
        .filter(|(at, _)| {
            !usable
                .iter()
                .any(|k| k.issued_at.is_some_and(|issued| issued > *at))
        })
        .max_by_key(|(at, c)| (*at, c.issued_at))
        .map(|(_, c)| c);
    pinned.or_else(|| {
        usable
            .into_iter()
            .max_by_key(|c| (c.expires_at.is_none(), c.expires_at, c.issued_at))
    })
}

/// Whether `key` is pinned and its pin is in force (it is then the current key).
pub fn pin_in_force(key: &IssuedKey, credentials: &[IssuedKey], now: OffsetDateTime) -> bool {
    key.pinned_at.is_some() && current_key(credentials, now).is_some_and(|c| c.key == key.key)
}

/// The complete key the rotator made to replace `key` (its [`IssuedKey::replaces`] is `key`'s
/// fingerprint), the latest issued when there are several.
pub fn successor<'a>(key: &IssuedKey, credentials: &'a [IssuedKey]) -> Option<&'a IssuedKey> {
    let fp = super::fingerprint(&key.key);
    complete_keys(credentials)
        .into_iter()
        .filter(|c| c.made_by_rotator && c.key != key.key && c.replaces.as_deref() == Some(&fp))
        .max_by_key(|c| c.issued_at)
}

/// Why the rotator must not revoke a key, whatever the targets hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRevocable {
    /// The API manager holds it revoked already.
    AlreadyRevoked,
    /// It expired: it opens nothing anyway.
    Expired,
    /// It is the current key (or pinned by a rollback).
    Current,
    /// The app has no current key: revoking would leave consumers with nothing.
    NoCurrentKey,
    /// A key the rotator made but did not finish: removed by the renewal's recovery instead.
    Unfinished,
    /// No key the rotator made replaces it, and no rollback withdrew it: a consumer outside
    /// the mapping may use it.
    NotReplaced,
}

impl NotRevocable {
    /// Why, for a person.
    pub fn describe(self) -> &'static str {
        match self {
            NotRevocable::AlreadyRevoked => "it is revoked already",
            NotRevocable::Expired => "it has expired",
            NotRevocable::Current => "it is the current key",
            NotRevocable::NoCurrentKey => "the app has no current key",
            NotRevocable::Unfinished => "it is a key the rotator did not finish",
            NotRevocable::NotReplaced => {
                "no key the rotator made replaces it (a consumer outside the mapping may use it)"
            }
        }
    }
}

/// Whether the rotator may revoke `key` of an app whose keys are `credentials`, as far as the
/// keys alone tell (the grace period, the targets and the per-app opt-out are the rotation's
/// part): only a key that is not current (nor pinned), still valid, and either replaced by a
/// complete key the rotator made ([`successor`]) or withdrawn by a rollback.
pub fn may_revoke(
    key: &IssuedKey,
    credentials: &[IssuedKey],
    now: OffsetDateTime,
) -> std::result::Result<(), NotRevocable> {
    if key.revoked {
        return Err(NotRevocable::AlreadyRevoked);
    }
    if key.expires_at.is_some_and(|exp| exp <= now) {
        return Err(NotRevocable::Expired);
    }
    if key.unfinished {
        return Err(NotRevocable::Unfinished);
    }
    let Some(current) = current_key(credentials, now) else {
        return Err(NotRevocable::NoCurrentKey);
    };
    if current.key == key.key || pin_in_force(key, credentials, now) {
        return Err(NotRevocable::Current);
    }
    if key.withdrawn_at.is_none() && successor(key, credentials).is_none() {
        return Err(NotRevocable::NotReplaced);
    }
    Ok(())
}

/// The two keys of an app's rollback ([`rollback_step`]).
#[derive(Debug, Clone, Copy)]
pub struct RollbackStep<'a> {
    /// The key made current again: the one the bad key replaced.
    pub restore: &'a IssuedKey,
    /// The bad key, withdrawn.
    pub withdraw: &'a IssuedKey,
    /// Whether an earlier rollback did both already (the restored key is current and pinned,
    /// the bad key withdrawn).
    pub done_before: bool,
}

/// What a rollback of an app whose keys are `credentials` does at `now`: go back from the
/// current key to the key it replaced ([`IssuedKey::replaces`]), when that key is still valid
/// (unexpired, finished, approved for an API product; revoked is fine: it is reactivated). A
/// rollback already under way or done is recognised — the current key is pinned by it, or the
/// key that replaced the current one is withdrawn — and finished (or found done), never taken
/// one key further. `Err` says, for a person, why there is nothing to go back to; keys appear
/// redacted.
pub fn rollback_step(
    credentials: &[IssuedKey],
    now: OffsetDateTime,
) -> std::result::Result<RollbackStep<'_>, String> {
    let current = current_key(credentials, now).ok_or("it has no current key")?;
    let fp = super::fingerprint(&current.key);
    let replaced_current = credentials
        .iter()
        .filter(|c| c.key != current.key && c.replaces.as_deref() == Some(fp.as_str()))
        .max_by_key(|c| c.issued_at);
    let pinned = pin_in_force(current, credentials, now);
    if pinned || replaced_current.is_some_and(|w| w.withdrawn_at.is_some()) {
        let withdraw = replaced_current.ok_or_else(|| {
            format!(
                "its current key {} was made current by a rollback already, and no later key replaces it",
                current.key
            )
        })?;
        return Ok(RollbackStep {
            restore: current,
            withdraw,
            done_before: pinned && withdraw.withdrawn_at.is_some(),
        });
    }
    let replaced = current.replaces.as_deref().ok_or_else(|| {
        format!(
            "its current key {} is not one the rotator made to replace another, so there is no previous key to go back to",
            current.key
        )
    })?;
    let previous = credentials
        .iter()
        .find(|c| super::fingerprint(&c.key) == replaced)
        .ok_or_else(|| {
            format!(
                "the key its current key {} replaced is no longer in the API manager",
                current.key
            )
        })?;
    if let Some(exp) = previous.expires_at.filter(|exp| *exp <= now) {
        return Err(format!(
            "the key its current key {} replaced, {}, expired on {}",
            current.key,
            previous.key,
            exp.date()
        ));
    }
    if previous.unfinished || previous.approved_products().next().is_none() {
        return Err(format!(
            "the key its current key {} replaced, {}, is approved for no API product",
            current.key, previous.key
        ));
    }
    Ok(RollbackStep {
        restore: previous,
        withdraw: current,
        done_before: false,
    })
}

/// The API products a new key must be approved for: the approved products of the current key;
/// without one, of the latest complete key (expired keys still tell which products the app is
/// meant to have); without one, of the latest finished key with approved products (a revoked
/// key, say). Pending associations are never copied: the rotator passes on access an
/// administrator granted, never access one has not yet granted.
pub fn products_to_copy(credentials: &[IssuedKey], now: OffsetDateTime) -> Option<Vec<String>> {
    let source = current_key(credentials, now)
        .or_else(|| complete_keys(credentials).last().copied())
        .or_else(|| {
            credentials
                .iter()
                .filter(|c| !c.unfinished && c.approved_products().next().is_some())
                .max_by_key(|c| (c.issued_at, c.expires_at.is_none(), c.expires_at))
        })?;
    Some(source.approved_products().map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::ApiKey;
    use crate::toolkit::ProductAssociation;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-22 06:00 UTC);

    fn assoc(product: &str, status: AssociationStatus) -> ProductAssociation {
        ProductAssociation {
            product: product.into(),
            status,
        }
    }

    /// A finished key approved for `p1`.
    fn cred(
        key: &str,
        issued_days_ago: i64,
        expires_in_days: Option<i64>,
        approved: bool,
    ) -> IssuedKey {
        IssuedKey {
            key: ApiKey::new(key),
            issued_at: Some(NOW - Duration::days(issued_days_ago)),
            expires_at: expires_in_days.map(|d| NOW + Duration::days(d)),
            approved,
            api_products: vec![assoc("p1", AssociationStatus::Approved)],
            unfinished: false,
            made_by_rotator: false,
            revoked: false,
            replaces: None,
            pinned_at: None,
            withdrawn_at: None,
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

    /// The previous key (approved for p1 and p2) and a newer key that is complete: the newer one
    /// is current. Each row changes one thing about the newer key, which then is never current,
    /// so the previous key stays current.
    #[test]
    fn only_a_complete_key_is_current() {
        use AssociationStatus::{Approved, Pending, Revoked};
        let previous = IssuedKey {
            api_products: vec![assoc("p1", Approved), assoc("p2", Approved)],
            ..cred("previous", 60, Some(30), true)
        };
        let valid = IssuedKey {
            api_products: vec![assoc("p1", Approved), assoc("p2", Approved)],
            ..cred("new", 1, Some(90), true)
        };
        let current_with = |new: &IssuedKey| {
            let creds = [previous.clone(), new.clone()];
            current_key(&creds, NOW).map(|c| c.key.expose().to_string())
        };
        assert_eq!(
            current_with(&valid).as_deref(),
            Some("new"),
            "the valid case"
        );

        type Tweak = fn(&mut IssuedKey);
        let tweaks: [(&str, Tweak); 8] = [
            ("the key itself is revoked", |c| c.approved = false),
            ("the key has no products", |c| c.api_products.clear()),
            ("a product of the previous key is missing", |c| {
                c.api_products.truncate(1)
            }),
            ("a product of the previous key is pending", |c| {
                c.api_products[1].status = Pending
            }),
            ("a product of the previous key is revoked", |c| {
                c.api_products[0].status = Revoked
            }),
            ("every product is pending", |c| {
                c.api_products.iter_mut().for_each(|a| a.status = Pending)
            }),
            ("the rotator has not finished it", |c| c.unfinished = true),
            ("it has expired", |c| {
                c.expires_at = Some(NOW - Duration::days(1))
            }),
        ];
        for (what, tweak) in tweaks {
            let mut new = valid.clone();
            tweak(&mut new);
            assert_eq!(current_with(&new).as_deref(), Some("previous"), "{what}");
        }

        // An extra product, even pending, does not make the key incomplete.
        let mut extra = valid.clone();
        extra.api_products.push(assoc("p3", Pending));
        assert_eq!(current_with(&extra).as_deref(), Some("new"));
        // A revoked previous key does not bind its successor.
        let creds = [
            IssuedKey {
                approved: false,
                ..previous.clone()
            },
            IssuedKey {
                api_products: vec![assoc("p1", Approved)],
                ..valid.clone()
            },
        ];
        assert_eq!(current_key(&creds, NOW).unwrap().key.expose(), "new");
        // An expired previous key still does: it tells which products the app has.
        let creds = [
            IssuedKey {
                expires_at: Some(NOW - Duration::days(1)),
                ..previous.clone()
            },
            IssuedKey {
                api_products: vec![assoc("p1", Approved)],
                ..valid.clone()
            },
        ];
        assert!(current_key(&creds, NOW).is_none());
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
    fn renews_inside_the_window_with_the_current_approved_products() {
        let mut current = cred("a", 10, Some(45), true);
        current.api_products.extend([
            assoc("p2", AssociationStatus::Pending),
            assoc("p3", AssociationStatus::Revoked),
            assoc("p4", AssociationStatus::Approved),
        ]);
        let creds = vec![current, cred("old", 100, Some(-5), true)];
        match policy().decide(&creds, NOW, false).unwrap() {
            Decision::Renew {
                products,
                reason,
                current,
            } => {
                // Access nobody approved (p2) or somebody refused (p3) is not passed on.
                assert_eq!(products, ["p1", "p4"]);
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
                assert_eq!(products, ["p1"]);
                assert_eq!(reason, RenewReason::Forced);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_usable_key_copies_products_from_the_latest_complete_key() {
        let revoked = IssuedKey {
            api_products: vec![assoc("of-revoked", AssociationStatus::Approved)],
            ..cred("revoked", 3, Some(300), false)
        };
        let expired = IssuedKey {
            api_products: vec![assoc("of-expired", AssociationStatus::Approved)],
            ..cred("expired", 200, Some(-10), true)
        };
        // A half-made key (the latest) tells nothing: its empty list is never copied.
        let half_made = IssuedKey {
            api_products: vec![],
            unfinished: true,
            made_by_rotator: true,
            ..cred("half", 1, Some(89), true)
        };
        let creds = vec![revoked.clone(), expired, half_made.clone()];
        match policy().decide(&creds, NOW, false).unwrap() {
            Decision::Renew {
                products,
                reason,
                current,
            } => {
                assert_eq!(products, ["of-expired"]);
                assert_eq!(reason, RenewReason::NoUsableKey);
                assert!(current.is_none());
            }
            other => panic!("{other:?}"),
        }
        // Without any complete key, the latest key with approved products tells.
        assert_eq!(
            products_to_copy(&[revoked, half_made.clone()], NOW).unwrap(),
            ["of-revoked"]
        );
        assert!(products_to_copy(&[half_made], NOW).is_none());
    }

    #[test]
    fn no_credentials_at_all_is_not_found() {
        let e = policy().decide(&[], NOW, true).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.message(), "app has no approved key to renew");
    }

    /// An unfinished key is finished with the current key's approved products, unless it can
    /// never be complete: then it is removed. A key with its products attached is recovered only
    /// while an association it needs is pending, and only when it is newer than the current key.
    #[test]
    fn recovery_of_unfinished_keys() {
        let current = cred("current", 60, Some(10), true);
        let half = IssuedKey {
            api_products: vec![],
            unfinished: true,
            made_by_rotator: true,
            ..cred("half", 1, Some(90), true)
        };
        let with = |u: &IssuedKey| recovery(u, &[current.clone(), u.clone()], NOW);
        assert_eq!(
            with(&half),
            Some(Recovery::Finish {
                products: vec!["p1".into()]
            })
        );
        assert_eq!(with(&current), None, "a complete key");
        let pending = IssuedKey {
            api_products: vec![assoc("p1", AssociationStatus::Pending)],
            unfinished: false,
            ..half.clone()
        };
        assert!(matches!(with(&pending), Some(Recovery::Finish { .. })));
        let not_ours = IssuedKey {
            made_by_rotator: false,
            ..pending.clone()
        };
        assert_eq!(with(&not_ours), None, "a key someone else made is theirs");
        let older = IssuedKey {
            issued_at: Some(NOW - Duration::days(90)),
            ..pending.clone()
        };
        assert_eq!(with(&older), None, "older than the current key");
        let extra_pending = IssuedKey {
            api_products: vec![
                assoc("p1", AssociationStatus::Approved),
                assoc("p9", AssociationStatus::Pending),
            ],
            ..pending.clone()
        };
        assert_eq!(with(&extra_pending), None, "complete, p9 is not needed");
        let removed = [
            IssuedKey {
                approved: false,
                ..half.clone()
            },
            IssuedKey {
                expires_at: Some(NOW - Duration::days(1)),
                ..half.clone()
            },
            IssuedKey {
                api_products: vec![assoc("p1", AssociationStatus::Revoked)],
                ..half.clone()
            },
        ];
        for u in &removed {
            assert!(matches!(with(u), Some(Recovery::Remove { .. })), "{u:?}");
        }
        assert!(matches!(
            recovery(&half, std::slice::from_ref(&half), NOW),
            Some(Recovery::Remove { .. })
        ));
    }
    /// A rollback's pin makes an older key current over every key issued before the pin; the
    /// next key issued after it ends the pin; a withdrawn key is never current.
    #[test]
    fn a_pin_holds_until_a_later_key_is_issued() {
        let pin_time = NOW - Duration::hours(1);
        let previous = IssuedKey {
            pinned_at: Some(pin_time),
            ..cred("previous", 60, Some(30), true)
        };
        let bad = cred("bad", 2, Some(88), true);
        let creds = [previous.clone(), bad.clone()];
        assert_eq!(current_key(&creds, NOW).unwrap().key.expose(), "previous");
        assert!(pin_in_force(&previous, &creds, NOW));
        // Without the pin the later expiry wins, as always.
        let unpinned = [cred("previous", 60, Some(30), true), bad.clone()];
        assert_eq!(current_key(&unpinned, NOW).unwrap().key.expose(), "bad");
        // The next renewal, issued after the pin, ends it.
        let next = IssuedKey {
            issued_at: Some(NOW - Duration::minutes(1)),
            ..cred("next", 0, Some(90), true)
        };
        let creds = [previous.clone(), bad.clone(), next];
        assert_eq!(current_key(&creds, NOW).unwrap().key.expose(), "next");
        assert!(!pin_in_force(&previous, &creds, NOW));
        // A half-made key issued after the pin does not end it.
        let half = IssuedKey {
            unfinished: true,
            made_by_rotator: true,
            issued_at: Some(NOW - Duration::minutes(1)),
            ..cred("half", 0, Some(90), true)
        };
        let creds = [previous.clone(), bad.clone(), half];
        assert_eq!(current_key(&creds, NOW).unwrap().key.expose(), "previous");
        // A pinned key that expired or was revoked pins nothing.
        for unusable in [
            IssuedKey {
                expires_at: Some(NOW - Duration::days(1)),
                ..previous.clone()
            },
            IssuedKey {
                approved: false,
                revoked: true,
                ..previous.clone()
            },
        ] {
            let creds = [unusable, bad.clone()];
            assert_eq!(current_key(&creds, NOW).unwrap().key.expose(), "bad");
        }
        // The latest pin wins among several.
        let older_pin = IssuedKey {
            pinned_at: Some(NOW - Duration::days(3)),
            ..cred("older", 80, Some(10), true)
        };
        let creds = [older_pin, previous.clone(), bad.clone()];
        assert_eq!(current_key(&creds, NOW).unwrap().key.expose(), "previous");
        // A withdrawn key is never current, pinned or not.
        let withdrawn = IssuedKey {
            withdrawn_at: Some(pin_time),
            ..bad.clone()
        };
        let creds = [cred("previous", 60, Some(30), true), withdrawn];
        assert_eq!(current_key(&creds, NOW).unwrap().key.expose(), "previous");
    }

    /// Only a valid key that is not current and that a rotator key replaces (or a rollback
    /// withdrew) may be revoked.
    #[test]
    fn only_replaced_keys_may_be_revoked() {
        let old = cred("old", 60, Some(30), true);
        let new = IssuedKey {
            made_by_rotator: true,
            replaces: Some(crate::toolkit::fingerprint(&old.key)),
            ..cred("new", 1, Some(90), true)
        };
        let other = cred("other", 70, Some(20), true);
        let creds = [old.clone(), new.clone(), other.clone()];
        assert_eq!(may_revoke(&old, &creds, NOW), Ok(()));
        assert_eq!(successor(&old, &creds).unwrap().key.expose(), "new");
        assert_eq!(
            may_revoke(&other, &creds, NOW),
            Err(NotRevocable::NotReplaced)
        );
        assert_eq!(may_revoke(&new, &creds, NOW), Err(NotRevocable::Current));
        let revoked = IssuedKey {
            approved: false,
            revoked: true,
            ..old.clone()
        };
        let creds_revoked = [revoked.clone(), new.clone()];
        assert_eq!(
            may_revoke(&revoked, &creds_revoked, NOW),
            Err(NotRevocable::AlreadyRevoked)
        );
        let expired = IssuedKey {
            expires_at: Some(NOW - Duration::days(1)),
            ..old.clone()
        };
        assert_eq!(
            may_revoke(&expired, &[expired.clone(), new.clone()], NOW),
            Err(NotRevocable::Expired)
        );
        // The same fingerprint on a key someone else made replaces nothing.
        let not_ours = IssuedKey {
            made_by_rotator: false,
            ..new.clone()
        };
        assert_eq!(
            may_revoke(&old, &[old.clone(), not_ours], NOW),
            Err(NotRevocable::NotReplaced)
        );
        // An incomplete successor replaces nothing yet; the old key stays current.
        let pending = IssuedKey {
            api_products: vec![assoc("p1", AssociationStatus::Pending)],
            ..new.clone()
        };
        assert_eq!(
            may_revoke(&old, &[old.clone(), pending], NOW),
            Err(NotRevocable::Current)
        );
        // A pinned old key is current, whatever replaces it.
        let pinned = IssuedKey {
            pinned_at: Some(NOW - Duration::hours(1)),
            ..old.clone()
        };
        assert_eq!(
            may_revoke(&pinned, &[pinned.clone(), new.clone()], NOW),
            Err(NotRevocable::Current)
        );
        // After a rollback the withdrawn bad key may be revoked, though nothing replaces it.
        let withdrawn = IssuedKey {
            withdrawn_at: Some(NOW - Duration::hours(1)),
            ..new.clone()
        };
        assert_eq!(
            may_revoke(&withdrawn, &[pinned.clone(), withdrawn.clone()], NOW),
            Ok(())
        );
        // No current key at all: nothing is revoked.
        let lone = IssuedKey {
            withdrawn_at: Some(NOW),
            ..old.clone()
        };
        assert_eq!(
            may_revoke(&lone, std::slice::from_ref(&lone), NOW),
            Err(NotRevocable::NoCurrentKey)
        );
    }

    /// A pinned key inside the renewal window is kept (the rollback holds), until it comes
    /// within the floor of its expiry or a renewal is forced; without the pin it is renewed.
    #[test]
    fn a_pin_holds_renewals_off_until_the_floor_or_a_force() {
        let policy = policy();
        let pinned = |expires_in: i64| IssuedKey {
            pinned_at: Some(NOW - Duration::hours(1)),
            ..cred("previous", 60, Some(expires_in), true)
        };
        let bad = IssuedKey {
            withdrawn_at: Some(NOW - Duration::hours(1)),
            ..cred("bad", 1, Some(89), true)
        };
        // 30 days left: inside the 45-day window, outside the 7-day floor.
        let creds = [pinned(30), bad.clone()];
        assert!(matches!(
            policy.decide(&creds, NOW, false).unwrap(),
            Decision::Keep(k) if k.key.expose() == "previous"
        ));
        assert!(matches!(
            policy.decide(&creds, NOW, true).unwrap(),
            Decision::Renew {
                reason: RenewReason::Forced,
                ..
            }
        ));
        let creds = [pinned(6), bad.clone()];
        assert!(matches!(
            policy.decide(&creds, NOW, false).unwrap(),
            Decision::Renew {
                reason: RenewReason::ExpiresSoon { .. },
                ..
            }
        ));
        let unpinned = [cred("previous", 60, Some(30), true), bad];
        assert!(matches!(
            policy.decide(&unpinned, NOW, false).unwrap(),
            Decision::Renew {
                reason: RenewReason::ExpiresSoon { .. },
                ..
            }
        ));
    }

    /// A rollback goes from the current key to the one it replaced (revoked or not); one
    /// interrupted after the withdrawal is finished, never taken one key further; nothing to
    /// go back to is said, with the keys redacted.
    #[test]
    fn a_rollback_goes_back_one_key_and_only_one() {
        let older = cred("olderolderolderolder0001", 100, Some(1), true);
        let previous = IssuedKey {
            made_by_rotator: true,
            replaces: Some(crate::toolkit::fingerprint(&older.key)),
            ..cred("previousprevious0002", 60, Some(30), true)
        };
        let bad = IssuedKey {
            made_by_rotator: true,
            replaces: Some(crate::toolkit::fingerprint(&previous.key)),
            ..cred("badbadbadbadbadbad0003", 1, Some(89), true)
        };
        let creds = [older.clone(), previous.clone(), bad.clone()];
        let step = rollback_step(&creds, NOW).unwrap();
        assert_eq!(step.restore.key, previous.key);
        assert_eq!(step.withdraw.key, bad.key);
        assert!(!step.done_before);
        // The previous key was revoked (by a grace revocation): still the one to go back to.
        let revoked = IssuedKey {
            approved: false,
            revoked: true,
            ..previous.clone()
        };
        let creds = [older.clone(), revoked.clone(), bad.clone()];
        assert_eq!(
            rollback_step(&creds, NOW).unwrap().restore.key,
            previous.key
        );
        // Interrupted after the pin: the previous key is current; finish (withdraw the bad
        // key), don't go on to the key before it.
        let pinned = IssuedKey {
            pinned_at: Some(NOW - Duration::minutes(4)),
            ..previous.clone()
        };
        let creds = [older.clone(), pinned.clone(), bad.clone()];
        let step = rollback_step(&creds, NOW).unwrap();
        assert_eq!(step.restore.key, previous.key);
        assert_eq!(step.withdraw.key, bad.key);
        assert!(!step.done_before);
        // Withdrawn without the pin (a rollback of an older version): the same.
        let withdrawn = IssuedKey {
            withdrawn_at: Some(NOW - Duration::minutes(5)),
            ..bad.clone()
        };
        let creds = [older.clone(), previous.clone(), withdrawn.clone()];
        let step = rollback_step(&creds, NOW).unwrap();
        assert_eq!(
            (&step.restore.key, &step.withdraw.key),
            (&previous.key, &bad.key)
        );
        assert!(!step.done_before);
        // Both: done.
        let creds = [older.clone(), pinned, withdrawn];
        assert!(rollback_step(&creds, NOW).unwrap().done_before);
        // Nothing to go back to.
        let e = rollback_step(std::slice::from_ref(&older), NOW).unwrap_err();
        assert!(e.contains("not one the rotator made"), "{e}");
        assert!(!e.contains(older.key.expose()), "{e}");
        let gone = [bad.clone()];
        assert!(rollback_step(&gone, NOW).unwrap_err().contains("no longer"));
        let expired = IssuedKey {
            expires_at: Some(NOW - Duration::days(1)),
            ..previous.clone()
        };
        assert!(rollback_step(&[expired, bad.clone()], NOW)
            .unwrap_err()
            .contains("expired on"));
        assert_eq!(
            rollback_step(&[], NOW).unwrap_err(),
            "it has no current key"
        );
    }
}
