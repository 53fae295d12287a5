//! Status, read-only (issue 15): every key the API manager holds for each mapped app, which one
//! is current and why, when it is due for renewal, and which key each target holds.
//!
//! It reads exactly what a dry run reads — per app one key list from the issuer, per
//! container one read of its mapped entries, per Key Vault reference one read of the secret it
//! names — and writes nothing: no key is renewed, finished or removed ([`KeySource::app_keys`]
//! only lists), no container is written, no run lock is taken. One difference from a dry run,
//! by design: an app whose keys are listed but which a run could not hand a key for (it has no
//! approved key at all) still has its targets read here, where a dry run skips them.
//!
//! The classification is pure functions over the keys and one clock reading
//! ([`key_role`], [`target_state`], [`renewal`], [`why_current`]), tested below with fixed
//! times; [`gather`] applies them over the plan. The answer ([`StatusAnswer`]) is the body of
//! `GET /api/KeyStatus` and the output of `status --json`; `docs/status.md` documents it.

use crate::azure::call::Call;
use crate::error::{Error, ErrorKind};
use crate::rfc3339::{self, Fraction};
use crate::targets::{PlannedContainer, SecretRef, Stored, VaultResolver};
use crate::toolkit::{
    policy, AppKeyList, AssociationStatus, IssuedKey, KeySource, RenewalPolicy,
    NEEDS_IN_PROCESS_TOOLKIT,
};
use serde::Serialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// What the caller of a status asked for.
#[derive(Debug, Clone, Default)]
pub struct StatusOptions {
    /// Only this API-manager app (it must be in the mapping).
    pub app: Option<String>,
    /// Asked through the HTTP function (whose deadline is shorter).
    pub http_triggered: bool,
}

/// The status of every mapped app: the body of `GET /api/KeyStatus` and the output of
/// `status --json`. Keys appear only as `****` and their last four characters.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusAnswer {
    /// Every target that does not hold its app's current key (drift), in plan order; targets
    /// that could not be read are not drift, they are counted in `summary.errors`.
    pub drift: Vec<Drift>,
    /// Counts.
    pub summary: StatusSummary,
    /// One entry per app, in mapping order.
    pub apps: Vec<AppStatus>,
    /// When the keys were read (RFC 3339, UTC, milliseconds): the instant every expiry and
    /// "days" of the answer counts from.
    pub timestamp: String,
}

/// The counts of a [`StatusAnswer`].
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StatusSummary {
    /// Apps shown.
    pub apps: usize,
    /// Keys the API manager holds for them.
    pub keys: usize,
    /// Mapped targets.
    pub targets: usize,
    /// Targets holding their app's current key.
    pub current: usize,
    /// Targets not holding it (`drift.len()`).
    pub drift: usize,
    /// Targets that could not be read or checked, and apps whose keys could not be listed.
    pub errors: usize,
}

/// A target that does not hold its app's current key.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Drift {
    /// The API-manager app.
    pub app_name: String,
    /// The report type of the target (`KEY_VAULT`, `WEB_APP`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// The target as the report names it (`vault/secret`, `site/setting`).
    pub target: String,
    /// What it holds instead.
    pub state: TargetState,
    /// The key it holds (`****` and its last four characters), when it is one of the app's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
}

/// One app: its keys, its current key, its targets.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppStatus {
    /// The API-manager app.
    pub app_name: String,
    /// Why its keys could not be listed (then `keys` is empty and no target was read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
    /// The key consumers should use now; `null` when there is none (or the list failed).
    pub current: Option<CurrentKey>,
    /// When there is no current key, what that means.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The policy's renewal window, in days (`null` when the keys could not be listed).
    pub renew_before_expiry_days: Option<u32>,
    /// Every key the API manager holds for the app, in the order they were issued.
    pub keys: Vec<KeyInfo>,
    /// Every mapped target of the app, in plan order.
    pub targets: Vec<TargetStatus>,
}

/// The current key of an app and when it is due.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CurrentKey {
    /// `****` and its last four characters.
    pub api_key: String,
    /// Why this key is the current one.
    pub why: String,
    /// When it expires (`null`: never).
    pub expires_at: Option<String>,
    /// Whole days until it expires (`null`: never).
    pub days_until_expiry: Option<i64>,
    /// When it is due for renewal: its expiry minus `renewBeforeExpiryDays` (`null`: never).
    pub renewal_due_at: Option<String>,
    /// Whole days until then; zero or less when it is due already.
    pub days_until_renewal: Option<i64>,
    /// Whether the next run renews it.
    pub renewal_due: bool,
}

/// One key of an app as the API manager holds it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KeyInfo {
    /// `****` and its last four characters.
    pub api_key: String,
    /// When it was issued, if known.
    pub issued_at: Option<String>,
    /// When it expires (`null`: never).
    pub expires_at: Option<String>,
    /// The key's own status in the API manager.
    pub status: KeyState,
    /// What it is to the app's consumers now.
    pub role: KeyRole,
    /// Whether the rotator created it.
    pub made_by_rotator: bool,
    /// Its API products, each with the association's approval.
    pub products: Vec<ProductInfo>,
}

/// A key's association with one API product.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ProductInfo {
    /// The API product.
    pub product: String,
    /// `approved`, `pending` or `revoked`.
    pub approval: &'static str,
}

/// A key's own status in the API manager.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum KeyState {
    /// Approved.
    Approved,
    /// Not approved (Apigee: `revoked`).
    Revoked,
    /// Created by the rotator, its products not attached yet (the next run finishes or
    /// removes it).
    Unfinished,
}

/// What a key is to the app's consumers now.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum KeyRole {
    /// The key consumers should use ([`policy::current_key`]).
    Current,
    /// Another complete key, still valid: consumers holding it keep working.
    Previous,
    /// Past its expiry.
    Expired,
    /// Not approved, or refused by every API product it had.
    Revoked,
    /// Withdrawn by a rollback: still valid, never current again, revoked once every target
    /// holds the current key.
    Withdrawn,
    /// Valid but never complete (a product association not approved, or unfinished): the
    /// rotator never hands it out.
    Incomplete,
}

/// What one target holds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum TargetState {
    /// The app's current key.
    Current,
    /// Another complete key of the app, still valid.
    Previous,
    /// An expired key of the app.
    Expired,
    /// A revoked key of the app.
    Revoked,
    /// A key a rollback withdrew (still valid until it is revoked).
    Withdrawn,
    /// A key of the app that was never complete.
    Incomplete,
    /// A value that is none of the app's keys.
    Unknown,
    /// Nothing.
    Missing,
    /// It could not be read or checked (see its `error`).
    Error,
}

impl TargetState {
    /// How the table writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Current => "current",
            TargetState::Previous => "previous",
            TargetState::Expired => "expired",
            TargetState::Revoked => "revoked",
            TargetState::Withdrawn => "withdrawn",
            TargetState::Incomplete => "incomplete",
            TargetState::Unknown => "unknown",
            TargetState::Missing => "missing",
            TargetState::Error => "error",
        }
    }

    /// Whether a target in this state is drift: it does not hold the current key (and was
    /// read: an error is not drift).
    pub fn is_drift(self) -> bool {
        !matches!(self, TargetState::Current | TargetState::Error)
    }
}

impl From<KeyRole> for TargetState {
    fn from(role: KeyRole) -> Self {
        match role {
            KeyRole::Current => TargetState::Current,
            KeyRole::Previous => TargetState::Previous,
            KeyRole::Expired => TargetState::Expired,
            KeyRole::Revoked => TargetState::Revoked,
            KeyRole::Withdrawn => TargetState::Withdrawn,
            KeyRole::Incomplete => TargetState::Incomplete,
        }
    }
}

/// One mapped target and what it holds.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TargetStatus {
    /// The report type (`KEY_VAULT`, `FUNCTION_APP`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// The target as the report names it (`vault/secret`, `site/setting`).
    pub target: String,
    /// For an entry holding a Key Vault reference: the secret it refers to, which is what was
    /// read and classified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// What it holds.
    pub state: TargetState,
    /// The key it holds (`****` and its last four characters), when it is one of the app's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// Why it could not be read or checked (`state` is then `error`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
}

/// An error of one target or app: its stable code and message (never a key).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// The stable code (`Forbidden`, `AppNotFound`, ...).
    pub code: String,
    /// What went wrong.
    pub message: String,
}

impl From<&Error> for Problem {
    fn from(e: &Error) -> Self {
        Self {
            code: e.code().to_string(),
            message: e.to_string(),
        }
    }
}

impl StatusAnswer {
    /// Whether something needs attention: drift, or a target or app that could not be checked.
    pub fn needs_attention(&self) -> bool {
        self.summary.drift > 0 || self.summary.errors > 0
    }
}

// ---- Pure classification --------------------------------------------------------------

/// A key's own status.
pub fn key_state(key: &IssuedKey) -> KeyState {
    if key.unfinished {
        KeyState::Unfinished
    } else if key.approved {
        KeyState::Approved
    } else {
        KeyState::Revoked
    }
}

/// What `key`, one of `keys`, is to consumers at `now`, `current` being the app's current key.
/// Revoked before expired: a revocation is a decision someone made.
pub fn key_role(
    key: &IssuedKey,
    keys: &[IssuedKey],
    current: Option<&IssuedKey>,
    now: OffsetDateTime,
) -> KeyRole {
    let refused_everywhere = key.approved_products().next().is_none()
        && key
            .api_products
            .iter()
            .any(|a| a.status == AssociationStatus::Revoked);
    if current.is_some_and(|c| c.key == key.key) {
        KeyRole::Current
    } else if !key.approved || refused_everywhere {
        KeyRole::Revoked
    } else if key.expires_at.is_some_and(|exp| exp <= now) {
        KeyRole::Expired
    } else if key.withdrawn_at.is_some() {
        KeyRole::Withdrawn
    } else if policy::complete_keys(keys).iter().any(|c| c.key == key.key) {
        KeyRole::Previous
    } else {
        KeyRole::Incomplete
    }
}

/// The key of `keys` that `stored` holds, if any (a fingerprint is compared with each key's
/// SHA-256). A reference holds none: its secret is read and compared instead.
pub fn held_key<'a>(stored: &Stored, keys: &'a [IssuedKey]) -> Option<&'a IssuedKey> {
    match stored {
        Stored::Missing | Stored::KeyVaultReference(_) => None,
        Stored::Value(v) => keys.iter().find(|k| k.key == *v),
        Stored::Fingerprint(f) => keys
            .iter()
            .find(|k| f.eq_ignore_ascii_case(&k.key.sha256_hex())),
    }
}

/// What a target holding `stored` holds, and the key when it is one of `keys`. A reference
/// that was not followed is `unknown` (callers follow references first).
pub fn target_state<'a>(
    stored: &Stored,
    keys: &'a [IssuedKey],
    current: Option<&IssuedKey>,
    now: OffsetDateTime,
) -> (TargetState, Option<&'a IssuedKey>) {
    if *stored == Stored::Missing {
        return (TargetState::Missing, None);
    }
    match held_key(stored, keys) {
        Some(k) => (key_role(k, keys, current, now).into(), Some(k)),
        None => (TargetState::Unknown, None),
    }
}

/// When `current`, one of `keys`, is due for renewal under `policy` (its expiry minus the
/// window, shorter for a key a rollback pinned; `None` for a key that never expires) and
/// whether it is due at `now`, as the policy decides.
pub fn renewal(
    current: &IssuedKey,
    keys: &[IssuedKey],
    policy: &RenewalPolicy,
    now: OffsetDateTime,
) -> (Option<OffsetDateTime>, bool) {
    let window = policy.window_for(current, keys, now);
    match current.expires_at {
        None => (None, false),
        Some(exp) => {
            let due = exp - window;
            (Some(due), exp - now <= window)
        }
    }
}

/// Why `current` is the current key among `keys`: the policy's usual rule, or (when the policy
/// chose another key than the latest-expiring complete one, as a rollback does) that it was
/// chosen over that one.
pub fn why_current(current: &IssuedKey, keys: &[IssuedKey], now: OffsetDateTime) -> String {
    if let Some(at) = current
        .pinned_at
        .filter(|_| policy::pin_in_force(current, keys, now))
    {
        return format!(
            "made current again by a rollback on {}; renewals hold off until a forced renewal, or its last {} days",
            at.date(),
            policy::PINNED_RENEWAL_FLOOR.whole_days()
        );
    }
    let latest = policy::complete_keys(keys)
        .into_iter()
        .filter(|c| c.expires_at.is_none_or(|exp| exp > now))
        .max_by_key(|c| (c.expires_at.is_none(), c.expires_at, c.issued_at));
    match latest {
        Some(l) if l.key != current.key => format!(
            "chosen by the renewal policy over {}, the complete key that expires latest (a rollback, say)",
            l.key.redacted()
        ),
        _ => "the complete, unexpired key that expires latest".to_string(),
    }
}

/// Whole days from `now` to `t` (negative when past).
fn days(t: OffsetDateTime, now: OffsetDateTime) -> i64 {
    (t - now).whole_days()
}

fn time_text(t: OffsetDateTime) -> String {
    rfc3339::format(t, Fraction::Millis)
}

/// The keys and current key of one app, from its list, at `now`.
fn app_status(list: &AppKeyList, now: OffsetDateTime) -> AppStatus {
    let keys = &list.keys;
    let current = policy::current_key(keys, now);
    let mut by_issue: Vec<&IssuedKey> = keys.iter().collect();
    by_issue.sort_by_key(|c| (c.issued_at, c.expires_at.is_none(), c.expires_at));
    let infos = by_issue
        .into_iter()
        .map(|k| KeyInfo {
            api_key: k.key.redacted(),
            issued_at: k.issued_at.map(time_text),
            expires_at: k.expires_at.map(time_text),
            status: key_state(k),
            role: key_role(k, keys, current, now),
            made_by_rotator: k.made_by_rotator,
            products: k
                .api_products
                .iter()
                .map(|a| ProductInfo {
                    product: a.product.clone(),
                    approval: match a.status {
                        AssociationStatus::Approved => "approved",
                        AssociationStatus::Pending => "pending",
                        AssociationStatus::Revoked => "revoked",
                    },
                })
                .collect(),
        })
        .collect();
    let current_info = current.map(|c| {
        let (due_at, due) = renewal(c, keys, &list.policy, now);
        CurrentKey {
            api_key: c.key.redacted(),
            why: why_current(c, keys, now),
            expires_at: c.expires_at.map(time_text),
            days_until_expiry: c.expires_at.map(|t| days(t, now)),
            renewal_due_at: due_at.map(time_text),
            days_until_renewal: due_at.map(|t| days(t, now)),
            renewal_due: due,
        }
    });
    AppStatus {
        app_name: list.app_name.clone(),
        error: None,
        note: current.is_none().then(|| {
            "no complete, unexpired key: the next run creates one, and no target can hold a current key until then".to_string()
        }),
        current: current_info,
        renew_before_expiry_days: Some(list.policy.renew_before_expiry_days),
        keys: infos,
        targets: Vec::new(),
    }
}

// ---- Gathering over the plan -------------------------------------------------------------

/// The status of `apps` over `plan`: one [`KeySource::app_keys`] per app, one read per
/// container of the entries whose app's keys are known, one read per followed Key Vault
/// reference (through `vaults`, as the run follows them); nothing is written. A failure of one
/// app or target is reported in its place and never stops the others; work not done by
/// `call`'s deadline is reported as `DeadlineExceeded`. Fails as a whole only when the key
/// source cannot list keys at all (a remote ToolkitApp: [`NEEDS_IN_PROCESS_TOOLKIT`]).
pub async fn gather(
    call: &Call,
    keys: &dyn KeySource,
    plan: &[PlannedContainer],
    apps: &[String],
    vaults: &dyn VaultResolver,
) -> Result<StatusAnswer, Error> {
    let deadline = call
        .deadline()
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(100 * 365 * 86_400));
    let lists = crate::fan_out::bounded(
        call.concurrency(),
        apps.iter().map(|app| async move {
            tokio::time::timeout_at(deadline.into(), keys.app_keys(call, app))
                .await
                .unwrap_or_else(|_| {
                    Err(Error::deadline_exceeded(&format!(
                        "listing the keys of {app}"
                    )))
                })
        }),
    )
    .await;
    if let Some(e) = lists
        .iter()
        .filter_map(|l| l.as_ref().err())
        .find(|e| e.code() == NEEDS_IN_PROCESS_TOOLKIT)
    {
        return Err(e.clone());
    }
    // One clock reading for the whole answer, taken once the keys are known.
    let now = OffsetDateTime::now_utc();
    let lists: HashMap<&str, Result<AppKeyList, Error>> =
        apps.iter().map(String::as_str).zip(lists).collect();
    let currents: HashMap<&str, Option<IssuedKey>> = lists
        .iter()
        .map(|(app, l)| {
            let current = l
                .as_ref()
                .ok()
                .and_then(|l| policy::current_key(&l.keys, now).cloned());
            (*app, current)
        })
        .collect();
    let view = View {
        lists: &lists,
        currents: &currents,
        now,
        vaults,
        deadline,
    };
    let view = &view;
    let per_container = crate::fan_out::bounded(
        call.concurrency(),
        plan.iter().map(|planned| view.container(planned)),
    )
    .await;

    let mut answer = StatusAnswer {
        drift: Vec::new(),
        summary: StatusSummary {
            apps: apps.len(),
            ..StatusSummary::default()
        },
        apps: Vec::new(),
        timestamp: time_text(now),
    };
    let mut statuses: Vec<AppStatus> = apps
        .iter()
        .map(|app| match &lists[app.as_str()] {
            Ok(list) => app_status(list, now),
            Err(e) => {
                answer.summary.errors += 1;
                AppStatus {
                    app_name: app.clone(),
                    error: Some(e.into()),
                    current: None,
                    note: None,
                    renew_before_expiry_days: None,
                    keys: Vec::new(),
                    targets: Vec::new(),
                }
            }
        })
        .collect();
    for (app, target) in per_container.into_iter().flatten() {
        answer.summary.targets += 1;
        match target.state {
            TargetState::Current => answer.summary.current += 1,
            TargetState::Error => answer.summary.errors += 1,
            state => answer.drift.push(Drift {
                app_name: app.clone(),
                kind: target.kind.clone(),
                target: target.target.clone(),
                state,
                api_key: target.api_key.clone(),
            }),
        }
        if let Some(s) = statuses.iter_mut().find(|s| s.app_name == app) {
            s.targets.push(target);
        }
    }
    answer.summary.drift = answer.drift.len();
    answer.summary.keys = statuses.iter().map(|s| s.keys.len()).sum();
    answer.apps = std::mem::take(&mut statuses);
    tracing::info!(
        apps = answer.summary.apps,
        targets = answer.summary.targets,
        current = answer.summary.current,
        drift = answer.summary.drift,
        errors = answer.summary.errors,
        "status read"
    );
    Ok(answer)
}

/// What the containers are classified against.
struct View<'a> {
    lists: &'a HashMap<&'a str, Result<AppKeyList, Error>>,
    currents: &'a HashMap<&'a str, Option<IssuedKey>>,
    now: OffsetDateTime,
    vaults: &'a dyn VaultResolver,
    deadline: Instant,
}

impl View<'_> {
    /// Every entry of one container, with its app: one read of the entries whose app's keys
    /// are known, then the references they hold followed.
    async fn container(&self, planned: &PlannedContainer) -> Vec<(String, TargetStatus)> {
        let container = planned.container.as_ref();
        let (kind, name) = (container.target_type(), container.label());
        let report_type = kind.report_type().to_string();
        let status = |entry: &str, state, api_key, error: Option<&Error>| TargetStatus {
            kind: report_type.clone(),
            target: format!("{name}/{entry}"),
            via: None,
            state,
            api_key,
            error: error.map(Problem::from),
        };
        let mut out = Vec::new();
        let mut ready = Vec::new();
        for entry in &planned.entries {
            match &self.lists[entry.apim_app_name.as_str()] {
                Ok(list) => ready.push((entry, list)),
                // As the run: without its app's keys an entry is not read.
                Err(_) => {
                    let e = Error::new(
                        ErrorKind::Unavailable,
                        format!(
                            "Not checked: the keys of {} could not be listed.",
                            entry.apim_app_name
                        ),
                    )
                    .with_code("KeyUnavailable");
                    out.push((
                        entry.apim_app_name.clone(),
                        status(&entry.name, TargetState::Error, None, Some(&e)),
                    ));
                }
            }
        }
        if ready.is_empty() {
            return out;
        }
        let names: Vec<String> = ready.iter().map(|(e, _)| e.name.clone()).collect();
        let stored = tokio::time::timeout_at(self.deadline.into(), container.read(&names))
            .await
            .unwrap_or_else(|_| {
                let e = Error::deadline_exceeded(&format!("{} {name}", kind.noun()));
                names.iter().map(|_| Err(e.clone())).collect()
            });
        for ((entry, list), stored) in ready.into_iter().zip(stored) {
            let app = entry.apim_app_name.as_str();
            let current = self.currents[app].as_ref();
            let target = match stored {
                Err(e) => status(&entry.name, TargetState::Error, None, Some(&e)),
                Ok(Stored::KeyVaultReference(secret)) => {
                    let entry_desc = format!("\"{}\" in {} {name}", entry.name, kind.noun());
                    let (via, result) = self.follow(&entry_desc, &secret).await;
                    let mut t = match result {
                        Err(e) => status(&entry.name, TargetState::Error, None, Some(&e)),
                        Ok(s) => {
                            let (state, key) = target_state(&s, &list.keys, current, self.now);
                            status(&entry.name, state, key.map(|k| k.key.redacted()), None)
                        }
                    };
                    t.via = Some(via);
                    t
                }
                Ok(s) => {
                    let (state, key) = target_state(&s, &list.keys, current, self.now);
                    status(&entry.name, state, key.map(|k| k.key.redacted()), None)
                }
            };
            out.push((app.to_string(), target));
        }
        out
    }

    /// Reads the secret a reference names, as the run does: a pinned version is refused
    /// without a read (the run refuses to rotate it), any other through `vaults`.
    async fn follow(
        &self,
        entry_desc: &str,
        secret: &SecretRef,
    ) -> (String, Result<Stored, Error>) {
        let mut via = format!("Key Vault secret {}", secret.secret_name);
        if let Some(e) = secret.pinned_error(entry_desc) {
            return (via, Err(e));
        }
        let vault = match self.vaults.vault(&secret.vault_url) {
            Ok(v) => v,
            Err(e) => return (via, Err(e)),
        };
        via = format!("{via} in {}", vault.label());
        let read = vault.read(std::slice::from_ref(&secret.secret_name));
        let stored = tokio::time::timeout_at(self.deadline.into(), read)
            .await
            .map(|mut r| r.remove(0))
            .unwrap_or_else(|_| {
                Err(Error::deadline_exceeded(&format!(
                    "Key Vault {}",
                    vault.label()
                )))
            });
        (via, stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Result;
    use crate::secret::ApiKey;
    use crate::targets::{Container, Entry, TargetType, Write};
    use crate::toolkit::{KeyGrant, KeyRequest, ProductAssociation};
    use std::sync::{Arc, Mutex};
    use time::macros::datetime;
    use time::Duration as Days;

    const NOW: OffsetDateTime = datetime!(2026-12-01 12:00 UTC);

    fn renewal_of(
        k: &IssuedKey,
        policy: &RenewalPolicy,
        now: OffsetDateTime,
    ) -> (Option<OffsetDateTime>, bool) {
        renewal(k, std::slice::from_ref(k), policy, now)
    }

    fn key(k: &str, issued_days_ago: i64, expires_in_days: Option<i64>) -> IssuedKey {
        IssuedKey {
            key: ApiKey::new(k),
            issued_at: Some(NOW - Days::days(issued_days_ago)),
            expires_at: expires_in_days.map(|d| NOW + Days::days(d)),
            approved: true,
            api_products: vec![ProductAssociation {
                product: "p1".into(),
                status: AssociationStatus::Approved,
            }],
            unfinished: false,
            made_by_rotator: false,
            revoked: false,
            replaces: None,
            pinned_at: None,
            withdrawn_at: None,
        }
    }

    /// An expired key, the previous one, the current one, a revoked one, and one with a
    /// pending association.
    fn keys() -> Vec<IssuedKey> {
        let mut revoked = key("REVOKEDREVOKEDREVOKED0004", 20, Some(70));
        revoked.approved = false;
        let mut pending = key("PENDINGPENDINGPENDING0005", 1, Some(89));
        pending.api_products[0].status = AssociationStatus::Pending;
        vec![
            key("EXPIREDEXPIREDEXPIRED0001", 200, Some(-110)),
            key("PREVIOUSPREVIOUSPREVI0002", 80, Some(10)),
            key("CURRENTCURRENTCURRENT0003", 5, Some(85)),
            revoked,
            pending,
        ]
    }

    fn roles(keys: &[IssuedKey]) -> Vec<KeyRole> {
        let current = policy::current_key(keys, NOW);
        keys.iter()
            .map(|k| key_role(k, keys, current, NOW))
            .collect()
    }

    #[test]
    fn every_key_has_its_role() {
        assert_eq!(
            roles(&keys()),
            [
                KeyRole::Expired,
                KeyRole::Previous,
                KeyRole::Current,
                KeyRole::Revoked,
                KeyRole::Incomplete
            ]
        );
        // A key refused by every product it had is revoked, whatever its own status.
        let mut refused = keys();
        refused[1].api_products[0].status = AssociationStatus::Revoked;
        assert_eq!(roles(&refused)[1], KeyRole::Revoked);
        // An unfinished key is never current.
        let mut unfinished = keys();
        unfinished[2].unfinished = true;
        unfinished[2].made_by_rotator = true;
        let r = roles(&unfinished);
        assert_eq!((r[1], r[2]), (KeyRole::Current, KeyRole::Incomplete));
        assert_eq!(key_state(&unfinished[2]), KeyState::Unfinished);
        assert_eq!(key_state(&keys()[3]), KeyState::Revoked);
        assert_eq!(key_state(&keys()[0]), KeyState::Approved);
    }

    #[test]
    fn targets_are_classified_by_what_they_hold() {
        let keys = keys();
        let current = policy::current_key(&keys, NOW);
        let state = |s: Stored| target_state(&s, &keys, current, NOW).0;
        let value = |k: &str| Stored::Value(ApiKey::new(k));
        assert_eq!(
            state(value("CURRENTCURRENTCURRENT0003")),
            TargetState::Current
        );
        assert_eq!(
            state(value("PREVIOUSPREVIOUSPREVI0002")),
            TargetState::Previous
        );
        assert_eq!(
            state(value("EXPIREDEXPIREDEXPIRED0001")),
            TargetState::Expired
        );
        assert_eq!(
            state(value("REVOKEDREVOKEDREVOKED0004")),
            TargetState::Revoked
        );
        assert_eq!(
            state(value("PENDINGPENDINGPENDING0005")),
            TargetState::Incomplete
        );
        assert_eq!(state(value("somethingelse-entirely")), TargetState::Unknown);
        assert_eq!(state(Stored::Missing), TargetState::Missing);
        // A fingerprint (application APIs) is compared with each key's SHA-256, any case.
        let fp = ApiKey::new("PREVIOUSPREVIOUSPREVI0002")
            .sha256_hex()
            .to_uppercase();
        let (s, k) = target_state(&Stored::Fingerprint(fp), &keys, current, NOW);
        assert_eq!(s, TargetState::Previous);
        assert_eq!(k.unwrap().key.redacted(), "****0002");
        assert_eq!(
            state(Stored::Fingerprint("00".repeat(32))),
            TargetState::Unknown
        );
        assert!(TargetState::Missing.is_drift() && TargetState::Previous.is_drift());
        assert!(!TargetState::Current.is_drift() && !TargetState::Error.is_drift());
    }

    #[test]
    fn renewal_is_due_at_expiry_minus_the_window() {
        let policy = RenewalPolicy::default(); // 45 days
        let (due, now_due) = renewal_of(&key("K-000000000001", 5, Some(85)), &policy, NOW);
        assert_eq!(due, Some(NOW + Days::days(40)));
        assert!(!now_due);
        assert_eq!(days(due.unwrap(), NOW), 40);
        let (due, now_due) = renewal_of(&key("K-000000000002", 80, Some(10)), &policy, NOW);
        assert_eq!(days(due.unwrap(), NOW), -35);
        assert!(now_due, "inside the window: the next run renews");
        // Exactly at the window's edge the policy renews.
        assert!(renewal_of(&key("K-000000000003", 1, Some(45)), &policy, NOW).1);
        assert_eq!(
            renewal_of(&key("K-000000000004", 1, None), &policy, NOW),
            (None, false)
        );
    }

    #[test]
    fn why_names_the_rule_or_the_key_passed_over() {
        let keys = keys();
        let current = policy::current_key(&keys, NOW).unwrap();
        assert!(why_current(current, &keys, NOW)
            .starts_with("the complete, unexpired key that expires latest"));
        // A key the policy chose over a later-expiring one (as a rollback would).
        let why = why_current(&keys[1], &keys, NOW);
        assert!(why.contains("over ****0003"), "{why}");
    }

    #[test]
    fn an_app_lists_its_keys_in_issue_order_with_its_current_key() {
        let list = AppKeyList {
            app_name: "app".into(),
            keys: keys().into_iter().rev().collect(),
            policy: RenewalPolicy::default(),
        };
        let s = app_status(&list, NOW);
        let shown: Vec<&str> = s.keys.iter().map(|k| k.api_key.as_str()).collect();
        assert_eq!(
            shown,
            ["****0001", "****0002", "****0004", "****0003", "****0005"]
        );
        let c = s.current.unwrap();
        assert_eq!(c.api_key, "****0003");
        assert_eq!(
            (c.days_until_expiry, c.days_until_renewal, c.renewal_due),
            (Some(85), Some(40), false)
        );
        assert_eq!(
            c.renewal_due_at.as_deref(),
            Some("2027-01-10T12:00:00.000Z")
        );
        assert_eq!(s.keys[2].products[0].approval, "approved");
        assert_eq!(s.keys[4].products[0].approval, "pending");
        let none = app_status(
            &AppKeyList {
                app_name: "app".into(),
                keys: vec![key("EXPIREDEXPIREDEXPIRED0001", 200, Some(-1))],
                policy: RenewalPolicy::default(),
            },
            NOW,
        );
        assert!(none.current.is_none() && none.note.is_some());
    }

    // ---- gather, over fakes of the targets and the key source ----

    /// Keys by app, as `app_keys` lists them; another app is unknown. Counts every call.
    struct FakeKeys {
        keys: Vec<IssuedKey>,
        current_calls: Mutex<usize>,
        lists: Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl KeySource for FakeKeys {
        async fn current_key(&self, _: &Call, _: &str, _: KeyRequest) -> Result<KeyGrant> {
            *self.current_calls.lock().unwrap() += 1;
            Err(Error::unexpected("status never asks for a grant"))
        }
        async fn app_keys(&self, _: &Call, app: &str) -> Result<AppKeyList> {
            self.lists.lock().unwrap().push(app.into());
            if app != "app" {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    "the API manager does not know the app",
                )
                .with_code("AppNotFound"));
            }
            Ok(AppKeyList {
                app_name: app.into(),
                keys: self.keys.clone(),
                policy: RenewalPolicy::default(),
            })
        }
    }

    /// Entries by name; `Err` for names in `deny`. Records reads, refuses writes.
    struct FakeStore {
        label: &'static str,
        values: HashMap<String, Stored>,
        deny: Vec<&'static str>,
        reads: Mutex<Vec<Vec<String>>>,
    }

    #[async_trait::async_trait]
    impl Container for FakeStore {
        fn target_type(&self) -> TargetType {
            crate::targets::key_vault::TYPE
        }
        fn label(&self) -> &str {
            self.label
        }
        async fn read(&self, names: &[String]) -> Vec<Result<Stored>> {
            self.reads.lock().unwrap().push(names.to_vec());
            names
                .iter()
                .map(|n| {
                    if self.deny.contains(&n.as_str()) {
                        Err(Error::new(ErrorKind::PermissionDenied, "refused")
                            .with_code("Forbidden"))
                    } else {
                        Ok(self.values.get(n).cloned().unwrap_or(Stored::Missing))
                    }
                })
                .collect()
        }
        async fn write(&self, _: &[Write]) -> Vec<Result<()>> {
            panic!("status never writes")
        }
        async fn references_updated(&self, _: &[String]) -> Result<()> {
            panic!("status never refreshes")
        }
    }

    struct OneVault(Arc<FakeStore>);

    impl VaultResolver for OneVault {
        fn vault(&self, _: &url::Url) -> Result<Arc<dyn Container>> {
            Ok(self.0.clone())
        }
    }

    fn call() -> Call {
        Call::new(Arc::new(crate::azure::retry::RetryPolicy::default()), None)
    }

    fn secret_ref(name: &str, version: Option<&str>) -> Stored {
        Stored::KeyVaultReference(SecretRef {
            vault_url: "https://kv1.vault.azure.net/".parse().unwrap(),
            secret_name: name.into(),
            version: version.map(String::from),
        })
    }

    /// One read per container (references followed one read each, a pinned one not read), a
    /// failed read reported in its place, an app the API manager does not know reported and
    /// its targets not read, drift listed; one key list per app and no grant asked for.
    #[tokio::test]
    async fn gather_reads_once_classifies_and_keeps_going() {
        let now = OffsetDateTime::now_utc();
        let at = |days: i64| Some(now + Days::days(days));
        let mut k = keys();
        // Real times: gather reads the clock itself.
        for (key, exp) in k.iter_mut().zip([-110, 10, 85, 70, 89]) {
            key.expires_at = at(exp);
            key.issued_at = at(exp - 90);
        }
        let source = FakeKeys {
            keys: k,
            current_calls: Mutex::new(0),
            lists: Mutex::new(Vec::new()),
        };
        let value = |k: &str| Stored::Value(ApiKey::new(k));
        let site = Arc::new(FakeStore {
            label: "site",
            values: [
                ("cur", value("CURRENTCURRENTCURRENT0003")),
                ("old", value("PREVIOUSPREVIOUSPREVI0002")),
                ("ref", secret_ref("s1", None)),
                ("pinned", secret_ref("s2", Some("v1"))),
                ("random", value("not-a-key-of-the-app-at-all")),
            ]
            .into_iter()
            .map(|(n, s)| (n.to_string(), s))
            .collect(),
            deny: vec!["denied"],
            reads: Mutex::default(),
        });
        let vault = Arc::new(FakeStore {
            label: "kv1",
            values: [("s1".to_string(), value("EXPIREDEXPIREDEXPIRED0001"))].into(),
            deny: vec![],
            reads: Mutex::default(),
        });
        let entry = |name: &str, app: &str| Entry {
            name: name.into(),
            apim_app_name: app.into(),
        };
        let plan = vec![PlannedContainer {
            container: site.clone(),
            entries: vec![
                entry("cur", "app"),
                entry("old", "app"),
                entry("ref", "app"),
                entry("pinned", "app"),
                entry("random", "app"),
                entry("gone", "app"),
                entry("denied", "app"),
                entry("x", "stranger"),
            ],
        }];
        let apps = ["app".to_string(), "stranger".to_string()];
        let answer = gather(&call(), &source, &plan, &apps, &OneVault(vault.clone()))
            .await
            .unwrap();

        assert_eq!(*source.lists.lock().unwrap(), ["app", "stranger"]);
        assert_eq!(*source.current_calls.lock().unwrap(), 0);
        assert_eq!(
            *site.reads.lock().unwrap(),
            [["cur", "old", "ref", "pinned", "random", "gone", "denied"]],
            "one read, without the entry of the app whose keys are unknown"
        );
        assert_eq!(
            *vault.reads.lock().unwrap(),
            [["s1"]],
            "the pinned one is not read"
        );

        let app = &answer.apps[0];
        let states: Vec<(&str, TargetState)> = app
            .targets
            .iter()
            .map(|t| (t.target.as_str(), t.state))
            .collect();
        assert_eq!(
            states,
            [
                ("site/cur", TargetState::Current),
                ("site/old", TargetState::Previous),
                ("site/ref", TargetState::Expired),
                ("site/pinned", TargetState::Error),
                ("site/random", TargetState::Unknown),
                ("site/gone", TargetState::Missing),
                ("site/denied", TargetState::Error),
            ]
        );
        assert_eq!(
            app.targets[2].via.as_deref(),
            Some("Key Vault secret s1 in kv1")
        );
        assert_eq!(app.targets[2].api_key.as_deref(), Some("****0001"));
        let code = |i: usize| app.targets[i].error.as_ref().map(|e| e.code.as_str());
        assert_eq!(
            (code(3), code(6)),
            (Some("PinnedKeyVaultReference"), Some("Forbidden"))
        );
        let stranger = &answer.apps[1];
        assert_eq!(stranger.error.as_ref().unwrap().code, "AppNotFound");
        assert_eq!(stranger.targets[0].state, TargetState::Error);
        assert_eq!(
            stranger.targets[0].error.as_ref().unwrap().code,
            "KeyUnavailable"
        );

        let drift: Vec<(&str, TargetState)> = answer
            .drift
            .iter()
            .map(|d| (d.target.as_str(), d.state))
            .collect();
        assert_eq!(
            drift,
            [
                ("site/old", TargetState::Previous),
                ("site/ref", TargetState::Expired),
                ("site/random", TargetState::Unknown),
                ("site/gone", TargetState::Missing),
            ]
        );
        assert_eq!(
            answer.summary,
            StatusSummary {
                apps: 2,
                keys: 5,
                targets: 8,
                current: 1,
                drift: 4,
                errors: 4,
            }
        );
        assert!(answer.needs_attention());
        let json = serde_json::to_string(&answer).unwrap();
        for k in &source.keys {
            assert!(!json.contains(k.key.expose()), "a full key in the answer");
        }
    }

    /// A key source that cannot list keys (a remote ToolkitApp) stops the status as a whole,
    /// before any target is read.
    #[tokio::test]
    async fn a_key_source_that_cannot_list_keys_is_a_clear_error() {
        struct Remote;
        #[async_trait::async_trait]
        impl KeySource for Remote {
            async fn current_key(&self, _: &Call, _: &str, _: KeyRequest) -> Result<KeyGrant> {
                Err(Error::unexpected("not called"))
            }
        }
        let site = Arc::new(FakeStore {
            label: "site",
            values: HashMap::new(),
            deny: vec![],
            reads: Mutex::default(),
        });
        let plan = vec![PlannedContainer {
            container: site.clone(),
            entries: vec![Entry {
                name: "a".into(),
                apim_app_name: "app".into(),
            }],
        }];
        let e = gather(
            &call(),
            &Remote,
            &plan,
            &["app".into()],
            &OneVault(site.clone()),
        )
        .await
        .unwrap_err();
        assert_eq!(e.code(), NEEDS_IN_PROCESS_TOOLKIT);
        assert!(site.reads.lock().unwrap().is_empty());
    }
}
