//! The run: one toolkit call per app, then, container by container, read every mapped entry,
//! compare it with the app's current key, and write only what differs.

use super::report::{Report, ReportEntry};
use crate::error::Error;
use crate::targets::{Planned, Stored, TargetKind, Write};
use crate::toolkit::{KeyGrant, KeyRequest, KeySource};
use futures::future::{BoxFuture, FutureExt};
use futures::stream::{self, StreamExt};
use std::collections::HashMap;
use std::time::Instant;

/// How a run behaves.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Plan only: read and compare, renew nothing, write nothing.
    pub dry_run: bool,
    /// Only this API-manager app (the caller has filtered the plan already).
    pub app: Option<String>,
    /// Renew now regardless of the SLA window (only honoured with `app`).
    pub force: bool,
    /// How many apps, and how many containers, are worked on at once.
    pub concurrency: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            app: None,
            force: false,
            concurrency: 16,
        }
    }
}

/// Runs one rotation over `plan` for `apps` and reports every outcome. Never fails as a whole:
/// a failing app or target becomes an error entry and the others go on.
pub async fn run(
    keys: &dyn KeySource,
    plan: &[Planned],
    apps: &[String],
    options: &RunOptions,
) -> Report {
    let started = Instant::now();
    let mut report = Report::new(options.dry_run);
    report.summary.apps = apps.len();
    report.summary.targets = plan.iter().map(|p| p.entries.len()).sum();

    let request = KeyRequest {
        force: options.force && options.app.is_some(),
        dry_run: options.dry_run,
    };
    let calls = apps
        .iter()
        .map(|app| async move { (app.clone(), keys.current_key(app, request).await) }.boxed());
    let grants: HashMap<String, Result<KeyGrant, Error>> =
        bounded(calls.collect(), options.concurrency)
            .await
            .into_iter()
            .collect();
    for app in apps {
        match &grants[app] {
            Ok(grant) if grant.renewed => {
                report.summary.renewed += 1;
                tracing::info!(app = %app, key = %grant.api_key, "key renewed in the API manager");
                report.successes.push(
                    ReportEntry::new("TOOLKIT", app, "", grant.message.clone())
                        .with_key(&grant.api_key),
                );
            }
            Ok(grant) if options.dry_run => {
                report.warnings.push(
                    ReportEntry::new("TOOLKIT", app, "", grant.message.clone())
                        .with_key(&grant.api_key),
                );
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(app = %app, code = e.code(), error = %e, "the toolkit could not provide the key");
                report
                    .errors
                    .push(ReportEntry::new("TOOLKIT", app, "", e.to_string()).with_code(e.code()));
            }
        }
    }

    let calls = plan
        .iter()
        .map(|planned| rotate_container(planned, &grants, options.dry_run).boxed());
    let outcomes = bounded(calls.collect(), options.concurrency).await;
    for outcome in outcomes.into_iter().flatten() {
        match outcome {
            Outcome::Updated(e) => {
                report.summary.updated += 1;
                report.successes.push(e);
            }
            Outcome::Unchanged(e) => {
                report.summary.unchanged += 1;
                report.warnings.push(e);
            }
            Outcome::Failed(e) => {
                report.summary.failed += 1;
                report.errors.push(e);
            }
        }
    }
    report.finish(started);
    tracing::info!(
        run_id = %report.run_id,
        updated = report.summary.updated,
        unchanged = report.summary.unchanged,
        failed = report.summary.failed,
        renewed = report.summary.renewed,
        duration_ms = report.summary.duration_ms,
        "rotation run finished"
    );
    report
}

/// Runs `calls` with at most `limit` at once, results in the order of `calls`. (Boxing first keeps the futures `Send` for any
/// lifetime, which the handlers' futures need.)
async fn bounded<'a, T>(calls: Vec<BoxFuture<'a, T>>, limit: usize) -> Vec<T> {
    stream::iter(calls)
        .buffer_unordered(limit.max(1))
        .collect()
        .await
}

enum Outcome {
    Updated(ReportEntry),
    Unchanged(ReportEntry),
    Failed(ReportEntry),
}

/// Reads every entry of one container, then writes, in one batch, those that differ.
async fn rotate_container(
    planned: &Planned,
    grants: &HashMap<String, Result<KeyGrant, Error>>,
    dry_run: bool,
) -> Vec<Outcome> {
    let container = planned.container.as_ref();
    let (kind, name) = (container.kind(), container.name());
    let target = |entry: &str| format!("{name}/{entry}");
    let mut outcomes = Vec::new();

    let mut ready = Vec::new();
    for entry in &planned.entries {
        match &grants[&entry.apim_app_name] {
            Ok(grant) => ready.push((entry, grant)),
            Err(_) => outcomes.push(Outcome::Failed(
                ReportEntry::new(
                    kind.report_type(),
                    &entry.apim_app_name,
                    &target(&entry.name),
                    format!(
                        "Not checked: the toolkit could not provide the key of {}.",
                        entry.apim_app_name
                    ),
                )
                .with_code("KeyUnavailable"),
            )),
        }
    }
    if ready.is_empty() {
        return outcomes;
    }

    let names: Vec<String> = ready.iter().map(|(e, _)| e.name.clone()).collect();
    let stored = container.read(&names).await;
    let mut writes = Vec::new();
    for ((entry, grant), stored) in ready.into_iter().zip(stored) {
        let label = target(&entry.name);
        match stored {
            Err(e) => outcomes.push(failed(kind, &entry.apim_app_name, &label, &e)),
            Ok(s) if s.holds(&grant.api_key) => outcomes.push(Outcome::Unchanged(
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
            )),
            Ok(s) => writes.push((
                Write {
                    name: entry.name.clone(),
                    apim_app_name: entry.apim_app_name.clone(),
                    key: grant.api_key.clone(),
                    expires_at: grant.expires_at,
                },
                s == Stored::Missing,
            )),
        }
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
    let results = if dry_run {
        writes.iter().map(|_| Ok(())).collect()
    } else {
        let batch: Vec<Write> = writes.iter().map(|(w, _)| w.clone()).collect();
        container.write(&batch).await
    };
    for ((write, created), result) in writes.into_iter().zip(results) {
        let label = target(&write.name);
        match result {
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
                            describe(kind, &write.name),
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

fn describe(kind: TargetKind, entry: &str) -> String {
    match kind {
        TargetKind::KeyVault => format!("secret {entry}"),
        TargetKind::ApplicationApi => format!("the key of \"{entry}\""),
    }
}

fn failed(kind: TargetKind, app: &str, target: &str, e: &Error) -> Outcome {
    tracing::warn!(target_kind = kind.report_type(), target = %target, code = e.code(), error = %e, "target failed");
    Outcome::Failed(
        ReportEntry::new(kind.report_type(), app, target, e.to_string()).with_code(e.code()),
    )
}
