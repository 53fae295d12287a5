//! The run: one toolkit call per app, then, container by container, read every mapped entry,
//! compare it with the app's current key, and write only what differs.
//!
//! A dry run is the same run over read-only decorators ([`super::dry_run`]): the engine reads
//! and compares as always, and its writes and renewals are recorded, never sent. The engine
//! knows it is a dry run only to word the report ("Would update ...").

use super::dry_run;
use super::key_check;
use super::report::{Report, ReportEntry};
use super::revocation::{self, Held, ReadBacks, RevocationPolicy, RevokeMode};
use crate::azure::call::Call;
use crate::error::Error;
use crate::error::ErrorKind;
use crate::targets::{
    Container, Entry, PlannedContainer, SecretRef, Stored, TargetType, VaultResolver, Write,
};
use crate::toolkit::{KeyGrant, KeyRequest, KeySource};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a run behaves (what the caller asked for; the retry policy, the concurrency and the
/// deadline travel in the run's [`Call`]).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Plan only: read and compare, renew nothing, write nothing.
    pub dry_run: bool,
    /// Only this API-manager app (the caller has filtered the plan already).
    pub app: Option<String>,
    /// Renew now regardless of the SLA window (only honoured with `app`).
    pub force: bool,
    /// Roll `app` back first ([`super::rollback`]): its current key's predecessor becomes
    /// current again, then the run redistributes it. Needs `app`; not with `force`.
    pub rollback: bool,
    /// How superseded keys are revoked: as the settings say, or at once after every write was
    /// read back (emergency rotation, `revoke=immediate`; the entry points allow it only with
    /// `force` and `app`).
    pub revoke: RevokeMode,
    /// The revocation settings, as [`crate::rotation::Rotator`] read them (default: off).
    pub revocation: RevocationPolicy,
    /// Started by an HTTP function that answers with its result (KeyStatus, KeyRollback: the
    /// default deadline is shorter, see [`crate::settings::Deadlines::for_run`]).
    pub http_triggered: bool,
    /// Told how the run advances (the command line's progress bar); `None`: nobody listens.
    pub progress: Option<Arc<dyn Progress>>,
    /// The mapping's key checks: an app's key is tried before its first write
    /// ([`super::key_check`]); none by default.
    pub key_checks: super::key_check::KeyChecks,
    /// Where the run notes each app's key expiry and what targets held that was not the
    /// current key, for the `renewal.upcoming` and `target.expiring` notifications
    /// ([`crate::notify::upcoming::Seen`]); `None`: nobody asks.
    pub seen: Option<Arc<crate::notify::upcoming::Seen>>,
    /// Who started the run and how, for the audit trail ([`crate::audit`]; default: the
    /// command line's OS user).
    pub origin: crate::audit::Origin,
    /// The run's id when the caller chose it: the HTTP function names it in the `Location` it
    /// answers before the run ends, and everything logged around the run carries it
    /// ([`crate::telemetry`]); `None`: a new one.
    pub run_id: Option<String>,
}

/// The empty report of a run started with `options` (its id as they choose).
pub(crate) fn new_report(options: &RunOptions) -> Report {
    let mut report = Report::new(options.dry_run);
    if let Some(id) = &options.run_id {
        report.run_id.clone_from(id);
    }
    report
}

/// Follows a run as it advances: apps whose key is known, targets finished. Called from the
/// run's tasks, so it must be cheap and never block.
pub trait Progress: Send + Sync + std::fmt::Debug {
    /// The run starts with `apps` apps and `targets` targets.
    fn start(&self, apps: usize, targets: usize);
    /// One more app's key is known (or failed).
    fn key_done(&self);
    /// `targets` more targets are finished (updated, unchanged or failed).
    fn targets_done(&self, targets: usize);
}

/// Runs one rotation over `plan` for `apps` under `call` and reports every outcome. Never
/// fails as a whole: a failing app or target becomes an error entry and the others go on.
/// Work not finished by `call`'s deadline is abandoned and its targets are reported as
/// `DeadlineExceeded` errors; `call` sets how many apps, and how many containers, are worked
/// on at once. The plan's containers carry the same call for their own requests.
///
/// Entries that hold a Key Vault reference are followed: the referenced secret is compared and
/// written through `vaults`, and the entry keeps its reference.
pub async fn run(
    call: &Call,
    keys: &dyn KeySource,
    plan: &[PlannedContainer],
    apps: &[String],
    options: &RunOptions,
    vaults: &dyn VaultResolver,
) -> Report {
    if !options.dry_run {
        return run_over(call, keys, plan, apps, options, vaults).await;
    }
    let keys = dry_run::ReadOnlyKeys::new(keys);
    let plan = dry_run::read_only(plan);
    let vaults = dry_run::ReadOnlyVaults::new(vaults);
    run_over(call, &keys, &plan, apps, options, &vaults).await
}

async fn run_over(
    call: &Call,
    keys: &dyn KeySource,
    plan: &[PlannedContainer],
    apps: &[String],
    options: &RunOptions,
    vaults: &dyn VaultResolver,
) -> Report {
    let started = Instant::now();
    // Far enough to never matter, and still a valid instant on every platform.
    let deadline = call
        .deadline()
        .unwrap_or(started + Duration::from_secs(100 * 365 * 86_400));
    let mut report = new_report(options);
    report.summary.apps = apps.len();
    report.summary.targets = plan.iter().map(|p| p.entries.len()).sum();
    let progress = options.progress.as_deref();
    if let Some(p) = progress {
        p.start(apps.len(), report.summary.targets);
    }

    let rotation = Rotation {
        keys: AppKeys {
            call,
            source: keys,
            // A dry run's read-only key source asks the toolkit for a dry run itself.
            request: KeyRequest {
                force: options.force && options.app.is_some(),
                dry_run: false,
            },
            deadline,
            cells: apps
                .iter()
                .map(|app| (app.clone(), tokio::sync::OnceCell::new()))
                .collect(),
            checks: key_check::Checks::new(&options.key_checks, apps, options.dry_run),
        },
        vaults,
        dry_run: options.dry_run,
        // An emergency (or a rollback) confirms every write by reading it back (a dry run
        // writes nothing).
        read_back: options.revoke != RevokeMode::Settings && !options.dry_run,
        read_backs: ReadBacks::default(),
        seen: options.seen.as_deref(),
    };
    let keys = &rotation.keys;
    // No phase waits for another: every app's key is fetched in app order while every
    // container works through its entries, each entry as soon as its app's key is known (a
    // container asking first fetches it itself). The retry policy's caps bound what is in
    // flight, so the run keeps as many requests going as it may, from start to end.
    let fetches = apps.iter().map(|app| async move {
        keys.get(app).await;
        if let Some(p) = progress {
            p.key_done();
        }
    });
    let rotation = &rotation;
    let containers = plan.iter().map(|planned| async move {
        let outcomes = tokio::time::timeout_at(deadline.into(), rotation.container(planned))
            .await
            .unwrap_or_else(|_| abandoned(planned, keys));
        if let Some(p) = progress {
            p.targets_done(outcomes.len());
        }
        outcomes
    });
    // Every container is under way at once: one waiting for its service's rate limit
    // (`azure::pace`) must not hold a place a container of another service could use.
    let (_, outcomes) = futures::future::join(
        crate::fan_out::bounded(call.concurrency(), fetches),
        crate::fan_out::bounded(plan.len(), containers),
    )
    .await;
    let held = held_by_app(outcomes.iter().flatten(), &rotation.read_backs);

    for app in apps {
        if let Ok(grant) = keys.done(app) {
            crate::telemetry::key_state(app, &grant.api_key, grant.expires_at);
            if let Some(seen) = rotation.seen {
                seen.grant(app, grant.expires_at);
            }
        }
        match keys.done(app) {
            // In a dry run `renewed` says the toolkit would renew; the key shown is the
            // current one, not the one it would create, so the entry carries none.
            Ok(grant) if grant.renewed && options.dry_run => {
                report.summary.renewed += 1;
                tracing::info!(app = %app, "the key would be renewed in the API manager");
                report
                    .successes
                    .push(ReportEntry::new("TOOLKIT", app, "", grant.message.clone()));
            }
            // Created, then withdrawn by its failed key check: not a renewal, and said so.
            Ok(grant) if grant.renewed && keys.checks.withdrew(app) => {
                report.warnings.push(
                    ReportEntry::new(
                        "TOOLKIT",
                        app,
                        "",
                        format!(
                            "{} Then withdrawn: its key check failed (see the {} entry), so the previous key stays current.",
                            grant.message,
                            key_check::REPORT_TYPE
                        ),
                    )
                    .with_key(&grant.api_key)
                    .with_code(key_check::WITHDRAWN_CODE),
                );
            }
            Ok(grant) if grant.renewed => {
                report.summary.renewed += 1;
                tracing::info!(event = crate::telemetry::KEY_RENEWED, app = %app, key = %grant.api_key, "key renewed in the API manager");
                report.successes.push(
                    ReportEntry::new("TOOLKIT", app, "", grant.message.clone())
                        .with_key(&grant.api_key),
                );
            }
            // No renewal needed: the same in a dry run and a real one, so not in the report.
            Ok(grant) => tracing::debug!(app = %app, "{}", grant.message),
            Err(e) => {
                tracing::warn!(app = %app, code = e.code(), error = %e, "the toolkit could not provide the key");
                report
                    .errors
                    .push(ReportEntry::new("TOOLKIT", app, "", e.to_string()).with_code(e.code()));
            }
        }
    }
    keys.checks
        .report(apps, |app| keys.done(app).ok().cloned(), &mut report);
    for outcome in outcomes.into_iter().flatten() {
        match outcome {
            Outcome::Updated(e) => {
                report.summary.updated += 1;
                report.successes.push(e);
            }
            Outcome::Unchanged(e) => {
                report.summary.unchanged += 1;
                report.unchanged.push(e);
            }
            Outcome::Failed(e) => {
                report.summary.failed += 1;
                report.errors.push(e);
            }
        }
    }
    let grant_of = |app: &str| rotation.keys.done(app);
    revocation::step(
        call,
        rotation.keys.source,
        apps,
        grant_of,
        &held,
        options,
        &mut report,
    )
    .await;
    report.finish(started);
    tracing::info!(
        event = crate::telemetry::RUN_ENDED,
        run_id = %report.run_id,
        dry_run = report.dry_run,
        updated = report.summary.updated,
        unchanged = report.summary.unchanged,
        failed = report.summary.failed,
        renewed = report.summary.renewed,
        duration_ms = report.summary.duration_ms,
        "rotation run finished"
    );
    report
}

/// One run in progress: the apps' keys, where referenced vaults are found, and whether it is
/// a dry run (for the report's wording only: the decorators make it read-only).
struct Rotation<'a> {
    keys: AppKeys<'a>,
    vaults: &'a dyn VaultResolver,
    dry_run: bool,
    /// Read every write back (emergency rotation), into `read_backs`.
    read_back: bool,
    read_backs: ReadBacks,
    /// What targets held besides the current key, when asked ([`RunOptions::seen`]).
    seen: Option<&'a crate::notify::upcoming::Seen>,
}

/// What each app's targets held in this run, for the revocation step: unchanged targets held
/// the current key; written ones count only when read back holding it.
fn held_by_app<'o>(
    outcomes: impl Iterator<Item = &'o Outcome>,
    read_backs: &ReadBacks,
) -> revocation::TargetsByApp {
    let mut by_app = revocation::TargetsByApp::new();
    for outcome in outcomes {
        let (entry, held) = match outcome {
            Outcome::Unchanged(e) => (e, Held::Confirmed),
            Outcome::Updated(e) => (
                e,
                read_backs
                    .get(&e.app_name, &e.target)
                    .unwrap_or(Held::Written),
            ),
            Outcome::Failed(e) => (e, Held::Failed(e.code.clone().unwrap_or_default())),
        };
        by_app
            .entry(entry.app_name.clone())
            .or_default()
            .push((entry.target.clone(), held));
    }
    by_app
}

/// Each app's key, fetched once by whichever part of the run asks first; the others wait for
/// that fetch.
struct AppKeys<'a> {
    call: &'a Call,
    source: &'a dyn KeySource,
    request: KeyRequest,
    deadline: Instant,
    cells: HashMap<String, tokio::sync::OnceCell<Result<KeyGrant, Error>>>,
    /// Each app's key check, run before the app's first write.
    checks: key_check::Checks<'a>,
}

impl AppKeys<'_> {
    /// `app`'s key: fetched now, or by the caller that asked first. Never beyond the deadline.
    async fn get(&self, app: &str) -> &Result<KeyGrant, Error> {
        self.cells[app]
            .get_or_init(|| async {
                let fetch = self.source.current_key(self.call, app, self.request);
                tokio::time::timeout_at(self.deadline.into(), fetch)
                    .await
                    .unwrap_or_else(|_| Err(key_deadline(app)))
            })
            .await
    }

    /// Whether a target of `app` may now be written with `grant` (its key check, run once).
    async fn allow(&self, app: &str, grant: &KeyGrant) -> Result<(), Error> {
        self.checks.allow(self.call, self.source, app, grant).await
    }

    /// `app`'s key as fetched, or the deadline error when the fetch never finished.
    fn done(&self, app: &str) -> Result<&KeyGrant, Error> {
        match self.cells[app].get() {
            Some(Ok(grant)) => Ok(grant),
            Some(Err(e)) => Err(e.clone()),
            None => Err(key_deadline(app)),
        }
    }
}

/// The error of an app whose key did not come before the deadline.
fn key_deadline(app: &str) -> Error {
    Error::deadline_exceeded(&format!("the toolkit call for {app}"))
}

/// The outcomes of a container abandoned at the deadline: every entry failed, with
/// `DeadlineExceeded` unless its key was unavailable anyway.
fn abandoned(planned: &PlannedContainer, keys: &AppKeys<'_>) -> Vec<Outcome> {
    let container = planned.container.as_ref();
    let (kind, name) = (container.target_type(), container.label());
    planned
        .entries
        .iter()
        .map(|entry| {
            let label = format!("{name}/{}", entry.name);
            match keys.done(&entry.apim_app_name) {
                // Without its key the entry was never written.
                Err(e) => key_unavailable(kind, entry, &label, &e),
                Ok(_) => {
                    let e = Error::deadline_exceeded(&format!("{} {name}", kind.noun()));
                    let e = Error::new(
                        e.kind(),
                        format!(
                            "{e}; \"{}\" was abandoned and may or may not hold the new key.",
                            entry.name
                        ),
                    )
                    .with_code(e.code());
                    failed(kind, &entry.apim_app_name, &label, &e)
                }
            }
        })
        .collect()
}

/// The outcome of an entry whose app's key the toolkit could not provide.
fn key_unavailable(kind: TargetType, entry: &Entry, label: &str, cause: &Error) -> Outcome {
    let (code, why) = if cause.kind() == ErrorKind::DeadlineExceeded {
        (
            "DeadlineExceeded",
            "the run's deadline passed before the toolkit provided",
        )
    } else {
        ("KeyUnavailable", "the toolkit could not provide")
    };
    Outcome::Failed(
        ReportEntry::new(
            kind.report_type(),
            &entry.apim_app_name,
            label,
            format!("Not checked: {why} the key of {}.", entry.apim_app_name),
        )
        .with_code(code),
    )
}

enum Outcome {
    Updated(ReportEntry),
    Unchanged(ReportEntry),
    Failed(ReportEntry),
}

impl Rotation<'_> {
    /// Reads every entry of one container, then writes, in one batch, those that differ.
    async fn container(&self, planned: &PlannedContainer) -> Vec<Outcome> {
        let dry_run = self.dry_run;
        let container = planned.container.as_ref();
        let (kind, name) = (container.target_type(), container.label());
        let target = |entry: &str| format!("{name}/{entry}");
        let mut outcomes = Vec::new();

        let mut ready = Vec::new();
        for entry in &planned.entries {
            match self.keys.get(&entry.apim_app_name).await {
                Ok(grant) => ready.push((entry, grant)),
                Err(e) => outcomes.push(key_unavailable(kind, entry, &target(&entry.name), e)),
            }
        }
        if ready.is_empty() {
            return outcomes;
        }

        let names: Vec<String> = ready.iter().map(|(e, _)| e.name.clone()).collect();
        let stored = container.read(&names).await;
        let mut writes = Vec::new();
        let mut references = Vec::new();
        for ((entry, grant), stored) in ready.into_iter().zip(stored) {
            let label = target(&entry.name);
            if let (Some(seen), Ok(s)) = (self.seen, &stored) {
                seen.note(
                    &entry.apim_app_name,
                    kind.report_type(),
                    &label,
                    s,
                    &grant.api_key,
                );
            }
            match stored {
                Err(e) => outcomes.push(failed(kind, &entry.apim_app_name, &label, &e)),
                Ok(Stored::KeyVaultReference(secret)) => references.push((entry, grant, secret)),
                Ok(s) if s.holds(&grant.api_key) && !would_renew(grant, dry_run) => {
                    outcomes.push(Outcome::Unchanged(
                        ReportEntry::new(
                            kind.report_type(),
                            &entry.apim_app_name,
                            &label,
                            format!(
                                "No update needed for \"{}\" in {} {name}.",
                                entry.name,
                                kind.noun()
                            ),
                        )
                        .with_key(&grant.api_key),
                    ))
                }
                Ok(s) => writes.push((
                    Write {
                        name: entry.name.clone(),
                        apim_app_name: entry.apim_app_name.clone(),
                        key: grant.api_key.clone(),
                        expires_at: grant.expires_at,
                    },
                    s == Stored::Missing,
                    would_renew(grant, dry_run),
                )),
            }
        }
        if !references.is_empty() {
            outcomes.extend(self.follow_references(container, references).await);
        }
        if writes.is_empty() {
            return outcomes;
        }
        let verb = |created: bool| match (dry_run, created) {
            (true, true) => "Would create",
            (true, false) => "Would update",
            (false, true) => "Created",
            (false, false) => "Updated",
        };
        let mut allowed = Vec::new();
        for write in writes {
            let app = write.0.apim_app_name.clone();
            let grant = self.keys.done(&app);
            match grant {
                Ok(grant) => match self.keys.allow(&app, grant).await {
                    Ok(()) => allowed.push(write),
                    Err(e) => outcomes.push(failed(kind, &app, &target(&write.0.name), &e)),
                },
                Err(e) => outcomes.push(failed(kind, &app, &target(&write.0.name), &e)),
            }
        }
        let writes = allowed;
        if writes.is_empty() {
            return outcomes;
        }
        let batch: Vec<Write> = writes.iter().map(|(w, _, _)| w.clone()).collect();
        let results = container.write(&batch).await;
        if self.read_back {
            self.read_backs
                .confirm(container, &batch, &results, &target)
                .await;
        }
        for ((write, created, renewing), result) in writes.into_iter().zip(results) {
            let label = target(&write.name);
            match result {
                Ok(()) if renewing => {
                    tracing::info!(target_kind = kind.report_type(), target = %label, dry_run, "target would get the renewed key");
                    outcomes.push(Outcome::Updated(ReportEntry::new(
                        kind.report_type(),
                        &write.apim_app_name,
                        &label,
                        format!(
                            "{} {} in {} {name} with the key that would be created for {}.",
                            verb(created),
                            kind.describe(&write.name),
                            kind.noun(),
                            write.apim_app_name
                        ),
                    )))
                }
                Ok(()) => {
                    tracing::info!(target_kind = kind.report_type(), target = %label, key = %write.key, dry_run, "target updated");
                    outcomes.push(Outcome::Updated(
                        ReportEntry::new(
                            kind.report_type(),
                            &write.apim_app_name,
                            &label,
                            format!(
                                "{} {} in {} {name}.",
                                verb(created),
                                kind.describe(&write.name),
                                kind.noun()
                            ),
                        )
                        .with_key(&write.key),
                    ))
                }
                Err(e) => outcomes.push(failed(kind, &write.apim_app_name, &label, &e)),
            }
        }
        outcomes
    }

    /// Updates the Key Vault secrets that entries of `container` refer to, leaving the entries'
    /// references as they are, then lets the container refresh what its consumers see.
    async fn follow_references(
        &self,
        container: &dyn Container,
        references: Vec<(&Entry, &KeyGrant, SecretRef)>,
    ) -> Vec<Outcome> {
        let dry_run = self.dry_run;
        let (kind, name) = (container.target_type(), container.label());
        let mut outcomes = Vec::new();
        let mut refreshed = Vec::new();
        for (entry, grant, secret) in references {
            let label = format!("{name}/{}", entry.name);
            let app = entry.apim_app_name.as_str();
            let entry_desc = format!("\"{}\" in {} {name}", entry.name, kind.noun());
            let entry_name = entry.name.clone();
            if let Some(e) = secret.pinned_error(&entry_desc) {
                outcomes.push(failed(kind, app, &label, &e));
                continue;
            }
            let vault = match self.vaults.vault(&secret.vault_url) {
                Ok(v) => v,
                Err(e) => {
                    outcomes.push(failed(kind, app, &label, &e));
                    continue;
                }
            };
            let in_vault = format!(
                "Key Vault secret {} in {}",
                secret.secret_name,
                vault.label()
            );
            let stored = vault
                .read(std::slice::from_ref(&secret.secret_name))
                .await
                .remove(0);
            if let (Some(seen), Ok(s)) = (self.seen, &stored) {
                seen.note(app, kind.report_type(), &label, s, &grant.api_key);
            }
            match stored {
            Err(e) => outcomes.push(failed(kind, app, &label, &e)),
            Ok(s) if s.holds(&grant.api_key) && !would_renew(grant, dry_run) => outcomes.push(Outcome::Unchanged(
                ReportEntry::new(
                    kind.report_type(),
                    app,
                    &label,
                    format!("No update needed for {entry_desc}: it refers to {in_vault}, which holds the key."),
                )
                .with_key(&grant.api_key),
            )),
            Ok(_) => {
                let write = Write {
                    name: secret.secret_name.clone(),
                    apim_app_name: app.to_string(),
                    key: grant.api_key.clone(),
                    expires_at: grant.expires_at,
                };
                if let Err(e) = self.keys.allow(app, grant).await {
                    outcomes.push(failed(kind, app, &label, &e));
                    continue;
                }
                let result = vault.write(&[write]).await.remove(0);
                if self.read_back && result.is_ok() {
                    self.read_backs
                        .confirm_one(vault.as_ref(), app, &label, &secret.secret_name, &grant.api_key)
                        .await;
                }
                match result {
                    Ok(()) => {
                        let verb = if dry_run { "Would update" } else { "Updated" };
                        let entry = ReportEntry::new(
                            kind.report_type(),
                            app,
                            &label,
                            format!("{verb} {in_vault}, which {entry_desc} refers to; the reference itself is unchanged."),
                        );
                        // A key still to be created has no last four characters to show.
                        let entry = if would_renew(grant, dry_run) {
                            entry
                        } else {
                            entry.with_key(&grant.api_key)
                        };
                        refreshed.push((entry_name, entry));
                    }
                    Err(e) => outcomes.push(failed(kind, app, &label, &e)),
                }
            }
        }
        }
        if refreshed.is_empty() {
            return outcomes;
        }
        let names: Vec<String> = refreshed.iter().map(|(n, _)| n.clone()).collect();
        let refresh = container.references_updated(&names).await;
        match refresh {
            Ok(()) => outcomes.extend(refreshed.into_iter().map(|(_, e)| Outcome::Updated(e))),
            Err(e) => {
                // The secrets hold the new key; consumers see it only once their cache expires.
                tracing::warn!(target_kind = kind.report_type(), container = name, code = e.code(), error = %e, "refresh of Key Vault references failed");
                outcomes.extend(refreshed.into_iter().map(|(_, mut entry)| {
                    entry.message = format!(
                        "{} But {} {name} could not refresh its Key Vault references: {e}",
                        entry.message,
                        kind.noun()
                    );
                    Outcome::Failed(entry.with_code(e.code()))
                }));
            }
        }
        outcomes
    }
}

/// Whether, in a dry run, `grant` is the current key of an app the toolkit would renew: then
/// every target of the app would be written (the new key differs from whatever they hold),
/// which is what the real run that follows does.
fn would_renew(grant: &KeyGrant, dry_run: bool) -> bool {
    dry_run && grant.renewed
}

fn failed(kind: TargetType, app: &str, target: &str, e: &Error) -> Outcome {
    tracing::warn!(target_kind = kind.report_type(), target = %target, code = e.code(), error = %e, "target failed");
    Outcome::Failed(
        ReportEntry::new(kind.report_type(), app, target, e.to_string()).with_code(e.code()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorKind, Result};
    use crate::secret::ApiKey;
    use crate::targets::{Container, Entry};
    use std::sync::{Arc, Mutex};

    /// A run's call in the unit tests: the default policy, no deadline.
    fn call() -> Call {
        Call::new(Arc::new(crate::azure::retry::RetryPolicy::default()), None)
    }

    fn call_until(deadline: Instant) -> Call {
        Call::new(
            Arc::new(crate::azure::retry::RetryPolicy::default()),
            Some(deadline),
        )
    }

    /// Keys by app; an app missing here fails. Counts calls per app.
    struct FakeKeys {
        keys: HashMap<String, &'static str>,
        calls: Mutex<Vec<String>>,
        /// This app's key never comes (an issuer that hangs for it).
        hang: Option<&'static str>,
    }

    #[async_trait::async_trait]
    impl KeySource for FakeKeys {
        async fn current_key(&self, _: &Call, app_name: &str, _: KeyRequest) -> Result<KeyGrant> {
            self.calls.lock().unwrap().push(app_name.to_string());
            if self.hang == Some(app_name) {
                futures::future::pending::<()>().await;
            }
            let key = self
                .keys
                .get(app_name)
                .ok_or_else(|| Error::new(ErrorKind::NotFound, "unknown app"))?;
            Ok(KeyGrant {
                app_name: app_name.into(),
                api_key: ApiKey::new(*key),
                issued_at: None,
                expires_at: None,
                // A dry run says it would renew, as the toolkit does.
                renewed: app_name == "renewed",
                message: "m".into(),
            })
        }
    }

    /// A store that records the writes it receives; `deny` fails reads of that entry, and
    /// entries in `refs` read as Key Vault references.
    #[derive(Default)]
    struct FakeStore {
        values: Mutex<HashMap<String, String>>,
        writes: Mutex<Vec<Vec<String>>>,
        deny: Option<&'static str>,
        refs: HashMap<String, SecretRef>,
        refreshed: Mutex<Vec<Vec<String>>>,
        /// Reads never answer (a service that hangs).
        hang: bool,
    }

    /// No vault: references cannot be followed.
    struct NoVaults;

    impl VaultResolver for NoVaults {
        fn vault(&self, url: &url::Url) -> Result<Arc<dyn Container>> {
            Err(Error::new(ErrorKind::NotFound, format!("no vault {url}")))
        }
    }

    /// One vault, whatever the URL.
    struct OneVault(Arc<FakeStore>);

    impl VaultResolver for OneVault {
        fn vault(&self, _: &url::Url) -> Result<Arc<dyn Container>> {
            Ok(self.0.clone())
        }
    }

    #[async_trait::async_trait]
    impl Container for FakeStore {
        fn target_type(&self) -> TargetType {
            crate::targets::key_vault::TYPE
        }
        fn label(&self) -> &str {
            "store"
        }
        async fn read(&self, names: &[String]) -> Vec<Result<Stored>> {
            if self.hang {
                futures::future::pending::<()>().await;
            }
            let values = self.values.lock().unwrap();
            names
                .iter()
                .map(|n| match (self.deny == Some(n.as_str()), values.get(n)) {
                    _ if self.refs.contains_key(n) => {
                        Ok(Stored::KeyVaultReference(self.refs[n].clone()))
                    }
                    (true, _) => {
                        Err(Error::new(ErrorKind::PermissionDenied, "denied")
                            .with_code("Forbidden"))
                    }
                    (false, Some(v)) => Ok(Stored::Value(ApiKey::new(v.clone()))),
                    (false, None) => Ok(Stored::Missing),
                })
                .collect()
        }
        async fn references_updated(&self, names: &[String]) -> Result<()> {
            self.refreshed.lock().unwrap().push(names.to_vec());
            Ok(())
        }
        async fn write(&self, writes: &[Write]) -> Vec<Result<()>> {
            self.writes
                .lock()
                .unwrap()
                .push(writes.iter().map(|w| w.name.clone()).collect());
            let mut values = self.values.lock().unwrap();
            writes
                .iter()
                .map(|w| {
                    values.insert(w.name.clone(), w.key.expose().into());
                    Ok(())
                })
                .collect()
        }
    }

    fn setup(
        deny: Option<&'static str>,
    ) -> (FakeKeys, Arc<FakeStore>, Vec<PlannedContainer>, Vec<String>) {
        let keys = FakeKeys {
            keys: [
                ("renewed", "key-renewed-0001"),
                ("same", "key-same-00000002"),
            ]
            .into_iter()
            .map(|(a, k)| (a.into(), k))
            .collect(),
            calls: Mutex::default(),
            hang: None,
        };
        let values = [("a", "old-value-000001"), ("b", "key-same-00000002")]
            .into_iter()
            .map(|(n, v)| (n.into(), v.into()))
            .collect();
        let store = Arc::new(FakeStore {
            values: Mutex::new(values),
            deny,
            ..FakeStore::default()
        });
        let entry = |name: &str, app: &str| Entry {
            name: name.into(),
            apim_app_name: app.into(),
        };
        let plan = vec![PlannedContainer {
            container: store.clone(),
            entries: vec![
                entry("a", "renewed"),
                entry("b", "same"),
                entry("c", "renewed"),
                entry("d", "broken"),
                entry("e", "same"),
            ],
        }];
        let apps = ["renewed", "same", "broken"].map(String::from).to_vec();
        (keys, store, plan, apps)
    }

    #[tokio::test]
    async fn one_key_call_per_app_and_one_batched_write_of_what_differs() {
        let (keys, store, plan, apps) = setup(None);
        let report = run(
            &call(),
            &keys,
            &plan,
            &apps,
            &RunOptions::default(),
            &NoVaults,
        )
        .await;
        assert_eq!(
            keys.calls.lock().unwrap().len(),
            3,
            "one toolkit call per app, not per target"
        );
        assert_eq!(
            *store.writes.lock().unwrap(),
            vec![vec!["a", "c", "e"]],
            "one batch with only the differing entries"
        );
        let s = &report.summary;
        assert_eq!(
            (
                s.apps,
                s.targets,
                s.updated,
                s.unchanged,
                s.failed,
                s.renewed
            ),
            (3, 5, 3, 1, 1, 1)
        );
        assert_eq!(
            report.unchanged[0].message,
            "No update needed for \"b\" in Key Vault store."
        );
        assert!(
            report.warnings.is_empty(),
            "unchanged targets are not warnings"
        );
        let skipped = report
            .errors
            .iter()
            .find(|e| e.target == "store/d")
            .unwrap();
        assert_eq!(skipped.code.as_deref(), Some("KeyUnavailable"));
        assert!(report
            .errors
            .iter()
            .any(|e| e.kind == "TOOLKIT" && e.app_name == "broken"));
        assert!(!serde_json::to_string(&report)
            .unwrap()
            .contains("key-renewed-0001"));

        let again = run(
            &call(),
            &keys,
            &plan,
            &apps,
            &RunOptions::default(),
            &NoVaults,
        )
        .await;
        assert_eq!(again.summary.updated, 0, "a second run converges");
        assert_eq!(store.writes.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_failing_entry_does_not_stop_the_others() {
        let (keys, store, plan, apps) = setup(Some("a"));
        let report = run(
            &call(),
            &keys,
            &plan,
            &apps,
            &RunOptions::default(),
            &NoVaults,
        )
        .await;
        assert_eq!(*store.writes.lock().unwrap(), vec![vec!["c", "e"]]);
        let denied = report
            .errors
            .iter()
            .find(|e| e.target == "store/a")
            .unwrap();
        assert_eq!(denied.code.as_deref(), Some("Forbidden"));
        assert_eq!(report.summary.failed, 2);
    }

    #[tokio::test]
    async fn dry_run_writes_nothing_and_says_what_it_would_do() {
        let (keys, store, plan, apps) = setup(None);
        let report = run(
            &call(),
            &keys,
            &plan,
            &apps,
            &RunOptions {
                dry_run: true,
                ..RunOptions::default()
            },
            &NoVaults,
        )
        .await;
        assert!(store.writes.lock().unwrap().is_empty());
        assert!(report.dry_run);
        let messages: Vec<&str> = report
            .successes
            .iter()
            .filter(|e| e.kind != "TOOLKIT")
            .map(|e| e.message.as_str())
            .collect();
        assert_eq!(
            messages,
            [
                "Would update secret a in Key Vault store with the key that would be created for renewed.",
                "Would create secret c in Key Vault store with the key that would be created for renewed.",
                "Would create secret e in Key Vault store."
            ]
        );
        let s = &report.summary;
        assert_eq!((s.updated, s.unchanged, s.failed, s.renewed), (3, 1, 1, 1));
    }

    /// Counts what a progress bar shows.
    #[derive(Debug, Default)]
    struct Counts(Mutex<(usize, usize, usize, usize)>);

    impl Progress for Counts {
        fn start(&self, apps: usize, targets: usize) {
            let mut c = self.0.lock().unwrap();
            (c.0, c.1) = (apps, targets);
        }
        fn key_done(&self) {
            self.0.lock().unwrap().2 += 1;
        }
        fn targets_done(&self, targets: usize) {
            self.0.lock().unwrap().3 += targets;
        }
    }

    /// Progress counts every app's key and every target, failed ones included, once.
    #[tokio::test]
    async fn progress_counts_every_key_and_target() {
        let (keys, _, plan, apps) = setup(Some("a"));
        let counts = Arc::new(Counts::default());
        let options = RunOptions {
            progress: Some(counts.clone()),
            ..RunOptions::default()
        };
        let report = run(&call(), &keys, &plan, &apps, &options, &NoVaults).await;
        assert_eq!(*counts.0.lock().unwrap(), (3, 5, 3, 5));
        assert_eq!(report.summary.failed, 2);
    }

    /// A dry run plans what the real run does: a target holding the current key of an app the
    /// toolkit would renew is planned as an update (the real run writes the new key there),
    /// and nothing shows a key that does not exist yet.
    #[tokio::test]
    async fn dry_run_plans_the_writes_of_a_renewal() {
        let (keys, store, plan, apps) = setup(None);
        store
            .values
            .lock()
            .unwrap()
            .insert("a".into(), "key-renewed-0001".into());
        let dry = RunOptions {
            dry_run: true,
            ..RunOptions::default()
        };
        let report = run(&call(), &keys, &plan, &apps, &dry, &NoVaults).await;
        assert!(store.writes.lock().unwrap().is_empty());
        let a = report
            .successes
            .iter()
            .find(|e| e.target == "store/a")
            .expect("a is planned as an update");
        assert!(a.message.starts_with("Would update secret a"), "{a:?}");
        assert_eq!(a.api_key, None, "the new key does not exist yet");
        let toolkit = report
            .successes
            .iter()
            .find(|e| e.kind == "TOOLKIT")
            .unwrap();
        assert_eq!(
            (toolkit.app_name.as_str(), &toolkit.api_key),
            ("renewed", &None)
        );
        assert_eq!(report.summary.renewed, 1);
        assert!(report.unchanged.iter().all(|e| e.app_name != "renewed"));
    }

    #[tokio::test]
    async fn references_are_followed_into_the_vault_and_left_as_they_are() {
        let (keys, _, _, _) = setup(None);
        let secret = |name: &str, version: Option<&str>| SecretRef {
            vault_url: "https://kv1.vault.azure.net/".parse().unwrap(),
            secret_name: name.into(),
            version: version.map(String::from),
        };
        let refs = [
            ("ref-stale", secret("s1", None)),
            ("ref-current", secret("s2", None)),
            ("ref-pinned", secret("s3", Some("v1"))),
        ];
        let site = Arc::new(FakeStore {
            refs: refs.into_iter().map(|(n, r)| (n.to_string(), r)).collect(),
            ..FakeStore::default()
        });
        let vault_values = [("s1", "old-value-000001"), ("s2", "key-same-00000002")]
            .into_iter()
            .map(|(n, v)| (n.into(), v.into()))
            .collect();
        let vault = Arc::new(FakeStore {
            values: Mutex::new(vault_values),
            ..FakeStore::default()
        });
        let entry = |name: &str| Entry {
            name: name.into(),
            apim_app_name: "same".into(),
        };
        let plan = vec![PlannedContainer {
            container: site.clone(),
            entries: vec![
                entry("ref-stale"),
                entry("ref-current"),
                entry("ref-pinned"),
            ],
        }];
        let report = run(
            &call(),
            &keys,
            &plan,
            &["same".to_string()],
            &RunOptions::default(),
            &OneVault(vault.clone()),
        )
        .await;

        assert!(
            site.writes.lock().unwrap().is_empty(),
            "a reference is never overwritten with a plain value"
        );
        assert_eq!(
            *vault.writes.lock().unwrap(),
            vec![vec!["s1"]],
            "only the stale referenced secret is written"
        );
        assert_eq!(*site.refreshed.lock().unwrap(), vec![vec!["ref-stale"]]);
        assert_eq!(
            (
                report.summary.updated,
                report.summary.unchanged,
                report.summary.failed
            ),
            (1, 1, 1)
        );
        assert!(
            report.successes[0]
                .message
                .contains("the reference itself is unchanged"),
            "{:?}",
            report.successes
        );
        assert_eq!(
            report.errors[0].code.as_deref(),
            Some("PinnedKeyVaultReference")
        );
    }

    /// No phase waits for another: while one app's key never comes, a container without that
    /// app is read and written, and the hung app's entries end at the deadline without a read.
    #[tokio::test]
    async fn a_key_that_never_comes_holds_back_only_its_own_entries() {
        let (mut keys, store, mut plan, apps) = setup(None);
        keys.hang = Some("renewed");
        let other = Arc::new(FakeStore {
            values: Mutex::new([("x".to_string(), "old-value-000009".to_string())].into()),
            ..FakeStore::default()
        });
        plan.insert(
            0,
            PlannedContainer {
                container: other.clone(),
                entries: vec![Entry {
                    name: "x".into(),
                    apim_app_name: "same".into(),
                }],
            },
        );
        let call = call_until(Instant::now() + Duration::from_millis(300));
        let report = run(
            &call,
            &keys,
            &plan,
            &apps,
            &RunOptions::default(),
            &NoVaults,
        )
        .await;
        assert_eq!(*other.writes.lock().unwrap(), vec![vec!["x"]]);
        let written: Vec<String> = store.writes.lock().unwrap().concat();
        assert!(
            !written.iter().any(|n| n == "a" || n == "c"),
            "nothing of the hung app is written: {written:?}"
        );
        let code = |target: &str| {
            report
                .errors
                .iter()
                .find(|e| e.target == target)
                .and_then(|e| e.code.clone())
        };
        assert_eq!(code("store/a").as_deref(), Some("DeadlineExceeded"));
        assert!(report.errors.iter().any(|e| e.target == "store/a"
            && e.message
                .starts_with("Not checked: the run's deadline passed")));
        assert_eq!(
            keys.calls
                .lock()
                .unwrap()
                .iter()
                .filter(|a| *a == "renewed")
                .count(),
            1,
            "a key is asked for once, however many containers wait for it"
        );
        assert!(report.successes.iter().any(|e| e.target == "store/x"));
    }

    /// At the deadline, a hung container's entries are errors `DeadlineExceeded`, the others
    /// keep their outcomes, every target appears once, and the run returns at the deadline.
    #[tokio::test]
    async fn the_deadline_abandons_unfinished_targets_and_reports_each_once() {
        let (keys, store, mut plan, apps) = setup(None);
        let hung = Arc::new(FakeStore {
            hang: true,
            ..FakeStore::default()
        });
        plan.push(PlannedContainer {
            container: hung,
            entries: vec![
                Entry {
                    name: "h1".into(),
                    apim_app_name: "same".into(),
                },
                Entry {
                    name: "h2".into(),
                    apim_app_name: "broken".into(),
                },
            ],
        });
        let started = Instant::now();
        let call = call_until(Instant::now() + Duration::from_millis(300));
        let report = run(
            &call,
            &keys,
            &plan,
            &apps,
            &RunOptions::default(),
            &NoVaults,
        )
        .await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            store.writes.lock().unwrap().len(),
            1,
            "the healthy store finished"
        );
        let code = |target: &str| {
            report
                .errors
                .iter()
                .find(|e| e.target == target)
                .and_then(|e| e.code.clone())
        };
        assert_eq!(code("store/h1").as_deref(), Some("DeadlineExceeded"));
        assert_eq!(code("store/h2").as_deref(), Some("KeyUnavailable"));
        let mut targets: Vec<&str> = report
            .successes
            .iter()
            .chain(&report.unchanged)
            .chain(&report.errors)
            .filter(|e| e.kind != "TOOLKIT")
            .map(|e| e.target.as_str())
            .collect();
        targets.sort();
        assert_eq!(
            targets,
            ["store/a", "store/b", "store/c", "store/d", "store/e", "store/h1", "store/h2"]
        );
        let s = &report.summary;
        assert_eq!((s.targets, s.updated + s.unchanged + s.failed), (7, 7));
    }
}
