//! The dashboard (issue 16): one self-contained HTML page of every app's keys on an expiry
//! timeline, its renewal due date, which targets are in sync or drifted, the last runs with
//! their failures, and the tail of the audit trail.
//!
//! It shows what two read-only sources give and adds no reading of its own: the status
//! ([`crate::rotation::status`], exactly a dry run's reads) and the audit tail
//! ([`crate::audit::tail`]). Keys appear only as those give them, `****` and the last four
//! characters. This module turns the audit records into runs ([`runs`]); [`render`] writes the
//! page. The page carries no script and names no outside resource: it reads the same with
//! JavaScript off, and the function serves it under a policy that forbids loading anything.

pub mod render;

pub use render::render;

use crate::audit::Record;
use crate::rotation::{Rotator, RunError, StatusAnswer, StatusOptions};

/// How many of the trail's last records the page reads (the runs are grouped from them).
pub const TAIL_RECORDS: usize = 500;

/// How many runs the page lists, newest first.
pub const RUNS_SHOWN: usize = 10;

/// How many records the page's audit tail lists, newest first.
pub const TAIL_SHOWN: usize = 50;

/// What the page knows of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audit {
    /// No sink is configured: there are no runs to show (the page says so).
    NotConfigured,
    /// The sink could not be read: why (the page says so; the status still shows).
    Unreadable(String),
    /// The trail's last records, oldest first.
    Records(Vec<Record>),
}

/// Everything one page shows.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    /// Every mapped app's keys and targets.
    pub status: &'a StatusAnswer,
    /// The audit trail's tail.
    pub audit: &'a Audit,
    /// The app the page is filtered to (`?app=`), if any.
    pub app: Option<&'a str>,
}

/// The page for `options`: the status (as KeyStatus reads it; its errors are the caller's to
/// answer) and the audit tail (an unreadable trail is said on the page and logged, never a
/// failure). What `GET /api/Dashboard` serves and `apikey-rotator dashboard` writes.
pub async fn page(rotator: &Rotator, options: &StatusOptions) -> Result<String, RunError> {
    let status = rotator.status(options).await?;
    let sink = rotator.audit();
    let audit = if !crate::audit::tail::configured(sink) {
        Audit::NotConfigured
    } else {
        match crate::audit::tail::tail(sink, TAIL_RECORDS).await {
            Ok(records) => Audit::Records(records),
            Err(why) => {
                tracing::warn!("the dashboard cannot read the audit trail: {why}");
                Audit::Unreadable(why)
            }
        }
    };
    Ok(render(&Page {
        status: &status,
        audit: &audit,
        app: options.app.as_deref(),
    }))
}

/// How a run ended, as far as the tail shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// Its `run.ended` record says it succeeded.
    Succeeded,
    /// Its `run.ended` record says it failed (some target or step failed).
    Failed,
    /// No `run.ended` record (yet): still running, or it stopped without one.
    Unfinished,
}

impl RunOutcome {
    /// How the page writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::Failed => "failed",
            RunOutcome::Unfinished => "no end record",
        }
    }
}

/// One run, grouped from its records by run id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The report's `runId`.
    pub run_id: String,
    /// `timer`, `http` or `cli`.
    pub trigger: String,
    /// Who started it.
    pub who: String,
    /// Its `run.started` time, when that record is in the tail.
    pub started: Option<String>,
    /// Its `run.ended` time, when that record is in the tail.
    pub ended: Option<String>,
    /// How it ended.
    pub outcome: RunOutcome,
    /// The `run.ended` record's counts, for a person.
    pub summary: String,
    /// Its failure and warning records, in order.
    pub problems: Vec<Record>,
}

/// The runs among `records` (oldest first, as the trail holds them), newest first: every run
/// id with a `run.started` or `run.ended` record. A ToolkitApp handout has its own id and no
/// such record, so it is no run (it shows in the audit tail). With `app`, only the runs that
/// have a record of that app (a key renewed, checked or revoked, a target written or failed:
/// a run that left all its targets unchanged records nothing of it), their problems limited
/// to it.
pub fn runs(records: &[Record], app: Option<&str>) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for r in records {
        let is_run_record = r.action == "run.started" || r.action == "run.ended";
        let at = match out.iter().position(|run| run.run_id == r.run_id) {
            Some(i) => i,
            None if is_run_record => {
                out.push(Run {
                    run_id: r.run_id.clone(),
                    trigger: r.trigger.as_str().to_string(),
                    who: r.who.clone(),
                    started: None,
                    ended: None,
                    outcome: RunOutcome::Unfinished,
                    summary: String::new(),
                    problems: Vec::new(),
                });
                out.len() - 1
            }
            None => continue,
        };
        let run = &mut out[at];
        match r.action.as_str() {
            "run.started" => run.started = Some(r.time.clone()),
            "run.ended" => {
                run.ended = Some(r.time.clone());
                run.summary = r.message.clone();
                run.outcome = if r.outcome == "success" {
                    RunOutcome::Succeeded
                } else {
                    RunOutcome::Failed
                };
            }
            _ if r.outcome != "success" && app.is_none_or(|a| r.app == a) => {
                run.problems.push(r.clone())
            }
            _ => {}
        }
    }
    if let Some(app) = app {
        out.retain(|run| {
            records
                .iter()
                .any(|r| r.run_id == run.run_id && r.app == app)
        });
    }
    out.reverse();
    out
}

/// The records of the tail the page lists, newest first: the last [`TAIL_SHOWN`], with `app`
/// only that app's (and no run's own records).
pub fn tail_shown<'r>(records: &'r [Record], app: Option<&str>) -> Vec<&'r Record> {
    records
        .iter()
        .rev()
        .filter(|r| app.is_none_or(|a| r.app == a))
        .take(TAIL_SHOWN)
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::audit::Trigger;

    /// A record of run `run` with `action`, `app`, `outcome`, `code`.
    pub(crate) fn record(
        run: &str,
        action: &str,
        app: &str,
        outcome: &str,
        code: Option<&str>,
    ) -> Record {
        Record {
            seq: 1,
            prev: String::new(),
            time: "2026-12-01T06:00:00.000Z".into(),
            run_id: run.into(),
            trigger: Trigger::Timer,
            who: "timer".into(),
            app: app.into(),
            target: if app.is_empty() {
                String::new()
            } else {
                format!("KEY_VAULT kv/{app}")
            },
            action: action.into(),
            old_key: None,
            new_key: Some("****x7K2".into()),
            outcome: outcome.into(),
            code: code.map(String::from),
            message: format!("{action} {outcome}"),
        }
    }

    pub(crate) fn two_runs() -> Vec<Record> {
        vec![
            record("r1", "run.started", "", "success", None),
            record("r1", "target.written", "A", "success", None),
            record("r1", "run.ended", "", "success", None),
            // A handout between runs: its own id, no run.
            record("h1", "key.handedOut", "A", "success", None),
            record("r2", "run.started", "", "success", None),
            record("r2", "target.failed", "B", "failure", Some("Forbidden")),
            record("r2", "target.written", "A", "success", None),
            record("r2", "run.ended", "", "failure", None),
            // Still running.
            record("r3", "run.started", "", "success", None),
        ]
    }

    #[test]
    fn runs_are_grouped_by_id_newest_first_with_their_failures() {
        let runs = runs(&two_runs(), None);
        let ids: Vec<(&str, RunOutcome)> = runs
            .iter()
            .map(|r| (r.run_id.as_str(), r.outcome))
            .collect();
        assert_eq!(
            ids,
            [
                ("r3", RunOutcome::Unfinished),
                ("r2", RunOutcome::Failed),
                ("r1", RunOutcome::Succeeded)
            ]
        );
        assert_eq!(runs[1].problems.len(), 1);
        assert_eq!(runs[1].problems[0].code.as_deref(), Some("Forbidden"));
        assert_eq!(runs[1].summary, "run.ended failure");
        assert!(runs[0].ended.is_none() && runs[0].started.is_some());
        assert!(runs[2].problems.is_empty());
    }

    #[test]
    fn a_run_cut_off_at_its_start_still_shows_and_an_app_filters() {
        // The tail begins after r1's start: r1 still shows, its start unknown.
        let records = two_runs()[1..].to_vec();
        let all = runs(&records, None);
        assert_eq!(all.last().unwrap().run_id, "r1");
        assert_eq!(all.last().unwrap().started, None);
        // Only runs with a record of B, and only B's problems.
        let b = runs(&two_runs(), Some("B"));
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].run_id, "r2");
        let a = runs(&two_runs(), Some("A"));
        let ids: Vec<&str> = a.iter().map(|r| r.run_id.as_str()).collect();
        assert_eq!(ids, ["r2", "r1"]);
        assert!(a[0].problems.is_empty(), "B's failure is not A's");
        let records = two_runs();
        let shown: Vec<&str> = tail_shown(&records, Some("A"))
            .iter()
            .map(|r| r.run_id.as_str())
            .collect();
        assert_eq!(shown, ["r2", "h1", "r1"]);
        assert_eq!(tail_shown(&two_runs(), None).len(), 9);
    }
}
