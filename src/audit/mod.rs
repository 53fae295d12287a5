//! The audit trail: one JSON record per event of a run (run started and ended, key created,
//! revoked, checked, rolled back, target written or failed), appended to a hash-chained,
//! append-only log ([`file`] for the command line).
//!
//! Each record is one line of JSON whose `prev` is the SHA-256 (lower-case hex) of the previous
//! record's exact line, and the first record's `prev` the SHA-256 of [`GENESIS`]; `seq` counts
//! from 1. [`verify`] walks a log and names the first line where the chain breaks, so an edit,
//! a deletion, an insertion or a reordering anywhere before the last line is detected. What a
//! chain alone cannot show (an edited or removed *last* record) is shown against a head kept
//! elsewhere: [`Verified::head`] is the last record's hash.
//!
//! Keys appear only as [`crate::secret::ApiKey::redacted`] (`****` and the last 4); the records
//! are built from the run's [`Report`], which carries nothing more.

pub mod file;
pub mod tail;

use crate::rfc3339;
use crate::rotation::report::{Report, ReportEntry};
use crate::secret::sha256_hex;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The setting that names the local audit file (JSON lines, appended to).
pub const AUDIT_LOG_FILE: &str = "AUDIT_LOG_FILE";

/// The report type of a warning about the audit trail (records not written).
pub const REPORT_TYPE: &str = "AUDIT";

/// What the first record's `prev` is the SHA-256 of.
pub const GENESIS: &str = "apikey-rotator audit trail v1";

/// What started a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// The `RotatorTimer` function.
    Timer,
    /// An HTTP function (`ApiKeyRotator`, `KeyRollback`).
    Http,
    /// The command line (the default: a run nobody said otherwise of).
    #[default]
    Cli,
}

impl Trigger {
    /// `timer`, `http` or `cli`.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Timer => "timer",
            Trigger::Http => "http",
            Trigger::Cli => "cli",
        }
    }
}

/// Who started a run and how: what every record of the run carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// Timer, HTTP or command line.
    pub trigger: Trigger,
    /// The HTTP caller's principal as the Functions host forwards it; `None`: the OS user for
    /// the command line ([`os_user`]), nobody for the timer.
    pub who: Option<String>,
}

impl Origin {
    /// Who, as recorded: the principal given, else the OS user (command line), else the
    /// trigger's own name.
    pub fn who(&self) -> String {
        match (&self.who, self.trigger) {
            (Some(w), _) => w.clone(),
            (None, Trigger::Cli) => os_user(),
            (None, Trigger::Timer) => "timer".into(),
            (None, Trigger::Http) => "unidentified caller".into(),
        }
    }
}

/// The OS user running the command line (`USER`, else `USERNAME`), or `unknown`.
pub fn os_user() -> String {
    ["USER", "USERNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

/// One audit record; its JSON line is what the chain hashes. Field order is the line's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Record {
    /// Position in the log, from 1.
    pub seq: u64,
    /// SHA-256 hex of the previous record's line (of [`GENESIS`] for the first).
    pub prev: String,
    /// When (RFC 3339, UTC, milliseconds).
    pub time: String,
    /// The run's id (the report's `runId`).
    pub run_id: String,
    /// `timer`, `http` or `cli`.
    pub trigger: Trigger,
    /// Who started the run.
    pub who: String,
    /// The API-manager app (empty for the run's own records).
    pub app: String,
    /// The target (empty when the event is not a target's).
    pub target: String,
    /// `run.started`, `key.created`, `target.written`, ...
    pub action: String,
    /// The key replaced or revoked, `****` and its last 4.
    pub old_key: Option<String>,
    /// The key created, written or restored, `****` and its last 4.
    pub new_key: Option<String>,
    /// `success`, `failure` or `warning`.
    pub outcome: String,
    /// The error code of a failure.
    pub code: Option<String>,
    /// What happened, for a person (the report's message: keys redacted).
    pub message: String,
}

/// A record's content before it is chained (`seq` and `prev` are the log's to give).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// When.
    pub time: String,
    /// The app.
    pub app: String,
    /// The target.
    pub target: String,
    /// The action.
    pub action: &'static str,
    /// The old key, redacted.
    pub old_key: Option<String>,
    /// The new key, redacted.
    pub new_key: Option<String>,
    /// `success`, `failure` or `warning`.
    pub outcome: &'static str,
    /// The code.
    pub code: Option<String>,
    /// The message.
    pub message: String,
}

/// Where a chain continues from: the last record's `seq` and the hash of its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The last `seq` (0 for an empty log).
    pub seq: u64,
    /// The SHA-256 hex of the last line ([`genesis`] for an empty log).
    pub hash: String,
}

impl Head {
    /// The head of an empty log.
    pub fn empty() -> Self {
        Head {
            seq: 0,
            hash: genesis(),
        }
    }

    /// The head after `line`, which must be a record (else why not).
    pub fn after(line: &str) -> Result<Self, String> {
        let r = parse(line)?;
        Ok(Head {
            seq: r.seq,
            hash: sha256_hex(line.as_bytes()),
        })
    }
}

/// The SHA-256 hex of [`GENESIS`].
pub fn genesis() -> String {
    sha256_hex(GENESIS.as_bytes())
}

/// Chains `events` of run `run_id` after `head`: their lines, in order, and the new head.
pub fn chain(head: &Head, run_id: &str, origin: &Origin, events: &[Event]) -> (Vec<String>, Head) {
    let who = origin.who();
    let mut head = head.clone();
    let mut lines = Vec::with_capacity(events.len());
    for e in events {
        let record = Record {
            seq: head.seq + 1,
            prev: head.hash.clone(),
            time: e.time.clone(),
            run_id: run_id.to_string(),
            trigger: origin.trigger,
            who: who.clone(),
            app: e.app.clone(),
            target: e.target.clone(),
            action: e.action.to_string(),
            old_key: e.old_key.clone(),
            new_key: e.new_key.clone(),
            outcome: e.outcome.to_string(),
            code: e.code.clone(),
            message: e.message.clone(),
        };
        // A struct of strings and options always serialises.
        let line = serde_json::to_string(&record).expect("a record serialises");
        head = Head {
            seq: record.seq,
            hash: sha256_hex(line.as_bytes()),
        };
        lines.push(line);
    }
    (lines, head)
}

/// The events of one finished run: `run.started` at `started`, one per success, error and
/// lifecycle warning of `report`, `run.ended` at the report's end time.
pub fn events_of(report: &Report, started: OffsetDateTime) -> Vec<Event> {
    let started = rfc3339::format(started, rfc3339::Fraction::Millis);
    let ended = if report.timestamp.is_empty() {
        rfc3339::format(OffsetDateTime::now_utc(), rfc3339::Fraction::Millis)
    } else {
        report.timestamp.clone()
    };
    let run = |action, outcome, message: String, time: &str| Event {
        time: time.to_string(),
        app: String::new(),
        target: String::new(),
        action,
        old_key: None,
        new_key: None,
        outcome,
        code: None,
        message,
    };
    let mut out = vec![run("run.started", "success", String::new(), &started)];
    let lists = [
        (&report.successes, "success"),
        (&report.errors, "failure"),
        (&report.warnings, "warning"),
    ];
    for (list, outcome) in lists {
        for e in list.iter() {
            if let Some(event) = event_of(e, outcome, &ended) {
                // A rollback that reactivated the revoked key it restored says so in its
                // wording (pinned by `rotation::rollback`'s tests): one record more.
                let reactivated = event.action == "rollback"
                    && outcome == "success"
                    && e.message.contains(" (reactivated) is current again");
                let reactivation = reactivated.then(|| Event {
                    action: "key.reactivated",
                    ..event.clone()
                });
                out.push(event);
                out.extend(reactivation);
            }
        }
    }
    let s = &report.summary;
    out.push(run(
        "run.ended",
        if report.has_errors() {
            "failure"
        } else {
            "success"
        },
        format!(
            "{} apps, {} targets: {} updated, {} unchanged, {} failed; {} renewed, {} revoked",
            s.apps, s.targets, s.updated, s.unchanged, s.failed, s.renewed, s.revoked
        ),
        &ended,
    ));
    out
}

/// The event of one report entry; `None` for a warning that is not a key's (the run lock's).
fn event_of(e: &ReportEntry, outcome: &'static str, time: &str) -> Option<Event> {
    use crate::rotation::{key_check, revocation, rollback};
    let kind = e.kind.as_str();
    let (action, key_is_old) = match kind {
        "TOOLKIT" => ("key.created", false),
        k if k == revocation::REPORT_TYPE => ("key.revoked", true),
        k if k == key_check::REPORT_TYPE => ("key.checked", false),
        k if k == rollback::ROLLBACK => ("rollback", false),
        _ if outcome == "warning" => return None,
        _ if outcome == "failure" => ("target.failed", false),
        _ => ("target.written", false),
    };
    let (old_key, new_key) = match (&e.api_key, key_is_old) {
        (Some(k), true) => (Some(k.clone()), None),
        (k, _) => (None, k.clone()),
    };
    Some(Event {
        time: time.to_string(),
        app: e.app_name.clone(),
        target: if e.target.is_empty() {
            String::new()
        } else {
            format!("{} {}", e.kind, e.target)
        },
        action,
        old_key,
        new_key,
        outcome,
        code: e.code.clone(),
        message: e.message.clone(),
    })
}

/// A line as a record, or why it is not one.
pub fn parse(line: &str) -> Result<Record, String> {
    serde_json::from_str(line).map_err(|e| format!("not an audit record ({e})"))
}

/// An intact log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Its records.
    pub records: usize,
    /// The hash of its last line: keep it elsewhere to detect a change of the last record.
    pub head: Head,
}

/// Where and why a log is not intact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The line (from 1) where the chain breaks.
    pub line: usize,
    /// Why.
    pub why: String,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.why)
    }
}

/// Checks the chain of `lines` (a log's lines, in order, without their line ends): each a
/// record, `seq` counting from 1 without gaps, each `prev` the hash of the line before.
pub fn verify<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<Verified, Broken> {
    let mut head = Head::empty();
    let mut n = 0;
    for (i, line) in lines.into_iter().enumerate() {
        let at = i + 1;
        let broken = |why: String| Broken { line: at, why };
        let r = parse(line).map_err(broken)?;
        if r.seq != head.seq + 1 {
            return Err(broken(format!(
                "seq is {}, expected {}: a record was removed, inserted or moved before here",
                r.seq,
                head.seq + 1
            )));
        }
        if r.prev != head.hash {
            return Err(broken(if at == 1 {
                "prev is not the genesis hash: this is not the log's first record".to_string()
            } else {
                format!(
                    "prev does not match line {}: that line was edited (or this one replaced)",
                    at - 1
                )
            }));
        }
        head = Head {
            seq: r.seq,
            hash: sha256_hex(line.as_bytes()),
        };
        n = at;
    }
    Ok(Verified { records: n, head })
}

/// Appends the records of a finished run to the audit sink the settings name (today: the
/// local file of [`AUDIT_LOG_FILE`]; none when it is not set). A dry run changes nothing and
/// is not recorded. A sink that fails loses nothing silently: the report gets an [`REPORT_TYPE`]
/// warning with the count of records not written, and the log an error.
pub fn record_run(
    settings: &crate::settings::Settings,
    origin: &Origin,
    report: &mut Report,
    started: OffsetDateTime,
) {
    let Some(path) = settings.get(AUDIT_LOG_FILE) else {
        return;
    };
    if report.dry_run {
        return;
    }
    let events = events_of(report, started);
    if let Err(why) = file::append(std::path::Path::new(path), &report.run_id, origin, &events) {
        tracing::error!(
            setting = AUDIT_LOG_FILE,
            records = events.len(),
            "audit trail not written: {why}"
        );
        report.warnings.push(
            ReportEntry::new(
                REPORT_TYPE,
                "",
                "",
                format!(
                    "{} audit records not written ({AUDIT_LOG_FILE}): {why}",
                    events.len()
                ),
            )
            .with_code("AuditWriteFailed"),
        );
    }
}

/// Appends the record of a key ToolkitApp (or the standalone toolkit) handed out to `origin`'s
/// caller, preceded by `key.created` when the request renewed it, to the sink the settings
/// name (none when [`AUDIT_LOG_FILE`] is not set). The answer carries no report, so a sink
/// that fails is logged as an error with the count of records not written.
pub fn record_handout(
    settings: &crate::settings::Settings,
    origin: &Origin,
    grant: &crate::toolkit::KeyGrant,
    dry_run: bool,
) {
    let Some(path) = settings.get(AUDIT_LOG_FILE) else {
        return;
    };
    let events = handout_events(grant, dry_run, OffsetDateTime::now_utc());
    let id = uuid::Uuid::new_v4().to_string();
    if let Err(why) = file::append(std::path::Path::new(path), &id, origin, &events) {
        tracing::error!(
            setting = AUDIT_LOG_FILE,
            records = events.len(),
            app = %grant.app_name,
            "{} audit records not written: {why}",
            events.len()
        );
    }
}

/// The events of one handout: `key.created` when it renewed the key (not in a dry run, which
/// renews nothing), then `key.handedOut`.
fn handout_events(
    grant: &crate::toolkit::KeyGrant,
    dry_run: bool,
    now: OffsetDateTime,
) -> Vec<Event> {
    let event = |action, message: String| Event {
        time: rfc3339::format(now, rfc3339::Fraction::Millis),
        app: grant.app_name.clone(),
        target: String::new(),
        action,
        old_key: None,
        new_key: Some(grant.api_key.redacted()),
        outcome: "success",
        code: None,
        message,
    };
    let mut out = Vec::new();
    if grant.renewed && !dry_run {
        out.push(event("key.created", grant.message.clone()));
    }
    let what = if dry_run { " (dry run)" } else { "" };
    out.push(event(
        "key.handedOut",
        format!("{} handed out{what}", grant.api_key),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rotation::report::ReportEntry;
    use time::macros::datetime;

    fn event(app: &str, action: &'static str) -> Event {
        Event {
            time: "2026-12-01T06:00:00.000Z".into(),
            app: app.into(),
            target: String::new(),
            action,
            old_key: None,
            new_key: Some("****x7K2".into()),
            outcome: "success",
            code: None,
            message: "m".into(),
        }
    }

    fn log(n: usize) -> Vec<String> {
        let events: Vec<Event> = (0..n)
            .map(|i| event(&format!("app{i}"), "key.created"))
            .collect();
        chain(&Head::empty(), "run-1", &Origin::default(), &events).0
    }

    fn check(lines: &[String]) -> Result<Verified, Broken> {
        verify(lines.iter().map(String::as_str))
    }

    #[test]
    fn an_intact_chain_verifies_and_continues_across_runs() {
        let lines = log(4);
        let v = check(&lines).unwrap();
        assert_eq!(v.records, 4);
        assert_eq!(v.head, Head::after(&lines[3]).unwrap());
        let first = parse(&lines[0]).unwrap();
        assert_eq!((first.seq, first.prev.as_str()), (1, genesis().as_str()));
        // A second run chains after the first's last line.
        let (more, _) = chain(
            &v.head,
            "run-2",
            &Origin::default(),
            &[event("b", "run.ended")],
        );
        let all: Vec<String> = lines.into_iter().chain(more).collect();
        assert_eq!(check(&all).unwrap().records, 5);
        assert!(check(&[]).is_ok());
    }

    #[test]
    fn an_edited_field_is_detected_at_the_next_line() {
        let mut lines = log(4);
        lines[1] = lines[1].replace("app1", "appX");
        assert!(lines[1].contains("appX"));
        let b = check(&lines).unwrap_err();
        assert_eq!(b.line, 3, "{b}");
        assert!(b.why.contains("line 2"), "{b}");
    }

    #[test]
    fn a_deleted_line_is_detected() {
        let mut lines = log(4);
        lines.remove(1);
        assert_eq!(check(&lines).unwrap_err().line, 2);
        let mut first_gone = log(3);
        first_gone.remove(0);
        assert_eq!(check(&first_gone).unwrap_err().line, 1);
    }

    #[test]
    fn swapped_lines_are_detected() {
        let mut lines = log(4);
        lines.swap(1, 2);
        assert_eq!(check(&lines).unwrap_err().line, 2);
    }

    #[test]
    fn an_inserted_line_is_detected() {
        let mut lines = log(4);
        // Even a well-formed record chained after line 1 breaks the chain at the next line.
        let head = Head::after(&lines[0]).unwrap();
        let (forged, _) = chain(
            &head,
            "run-x",
            &Origin::default(),
            &[event("x", "key.revoked")],
        );
        lines.insert(1, forged[0].clone());
        let b = check(&lines).unwrap_err();
        assert_eq!(b.line, 3, "{b}");
        let mut garbage = log(2);
        garbage.insert(1, "{}".into());
        assert_eq!(check(&garbage).unwrap_err().line, 2);
    }

    #[test]
    fn a_rehashed_edit_is_still_detected_at_the_next_line() {
        // Whoever edits a line and recomputes its successor's prev breaks the one after.
        let mut lines = log(4);
        lines[1] = lines[1].replace("app1", "appX");
        let mut r = parse(&lines[2]).unwrap();
        r.prev = sha256_hex(lines[1].as_bytes());
        lines[2] = serde_json::to_string(&r).unwrap();
        assert_eq!(check(&lines).unwrap_err().line, 4);
    }

    #[test]
    fn a_report_maps_to_one_event_per_entry() {
        let mut report = Report::new(false);
        report.timestamp = "2026-12-01T06:00:02.000Z".into();
        let key = crate::secret::ApiKey::new("a-full-key-value-x7K2".to_string());
        report.successes = vec![
            ReportEntry::new("TOOLKIT", "A", "", "renewed").with_key(&key),
            ReportEntry::new("KEY_VAULT", "A", "kv/s", "updated").with_key(&key),
            ReportEntry::new("REVOCATION", "A", "", "revoked").with_key(&key),
            ReportEntry::new("KEY_CHECK", "A", "", "accepted").with_key(&key),
            ReportEntry::new("ROLLBACK", "A", "", "rolled back").with_key(&key),
        ];
        report.errors =
            vec![ReportEntry::new("APPLICATION_API", "B", "h/p", "refused").with_code("Forbidden")];
        report.warnings = vec![ReportEntry::new("LOCK", "", "", "not released")];
        let events = events_of(&report, datetime!(2026-12-01 06:00:00 UTC));
        let actions: Vec<&str> = events.iter().map(|e| e.action).collect();
        assert_eq!(
            actions,
            [
                "run.started",
                "key.created",
                "target.written",
                "key.revoked",
                "key.checked",
                "rollback",
                "target.failed",
                "run.ended"
            ]
        );
        assert_eq!(events[0].time, "2026-12-01T06:00:00.000Z");
        assert_eq!(events[3].old_key.as_deref(), Some("****x7K2"));
        assert_eq!(events[2].new_key.as_deref(), Some("****x7K2"));
        assert_eq!(events[2].target, "KEY_VAULT kv/s");
        assert_eq!(events[6].code.as_deref(), Some("Forbidden"));
        assert_eq!(events[7].outcome, "failure");
        let (lines, _) = chain(&Head::empty(), &report.run_id, &Origin::default(), &events);
        assert!(lines.iter().all(|l| !l.contains("a-full-key-value")));
    }

    #[test]
    fn a_rollback_that_reactivated_its_key_records_the_reactivation() {
        let issued = |k: &str| crate::toolkit::IssuedKey {
            key: crate::secret::ApiKey::new(k),
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
        };
        let mut outcome = crate::toolkit::RollbackOutcome {
            restored: issued("RESTOREDRESTOREDRESTORED0001"),
            withdrawn: issued("WITHDRAWNWITHDRAWNWITHDR0002"),
            reactivated: true,
            done_before: false,
        };
        let actions = |outcome: &crate::toolkit::RollbackOutcome| -> Vec<&str> {
            let mut report = Report::new(false);
            report.successes = vec![crate::rotation::rollback::entry("A", outcome, false)];
            events_of(&report, datetime!(2026-12-01 06:00:00 UTC))
                .iter()
                .map(|e| e.action)
                .collect()
        };
        assert_eq!(
            actions(&outcome),
            ["run.started", "rollback", "key.reactivated", "run.ended"]
        );
        outcome.reactivated = false;
        assert_eq!(actions(&outcome), ["run.started", "rollback", "run.ended"]);
    }

    #[test]
    fn who_is_the_principal_else_the_os_user() {
        let http = Origin {
            trigger: Trigger::Http,
            who: Some("principal ci@contoso.com (0b5c)".into()),
        };
        assert_eq!(http.who(), "principal ci@contoso.com (0b5c)");
        assert_eq!(Origin::default().who(), os_user());
        let (lines, _) = chain(&Head::empty(), "r", &http, &[event("a", "run.started")]);
        let r = parse(&lines[0]).unwrap();
        assert_eq!(
            (r.trigger, r.who.as_str()),
            (Trigger::Http, http.who().as_str())
        );
        assert!(lines[0].contains("\"trigger\":\"http\""));
    }

    #[test]
    fn a_handout_records_the_key_created_first_when_it_renewed() {
        let grant = crate::toolkit::KeyGrant {
            app_name: "A".into(),
            api_key: crate::secret::ApiKey::new("a-full-key-value-x7K2"),
            issued_at: None,
            expires_at: None,
            renewed: true,
            message: "renewed".into(),
        };
        let now = datetime!(2026-12-01 06:00:00 UTC);
        let actions = |dry| -> Vec<&str> {
            handout_events(&grant, dry, now)
                .iter()
                .map(|e| e.action)
                .collect()
        };
        assert_eq!(actions(false), ["key.created", "key.handedOut"]);
        assert_eq!(actions(true), ["key.handedOut"]);
        let e = &handout_events(&grant, false, now)[1];
        assert_eq!(e.new_key.as_deref(), Some("****x7K2"));
        assert!(!e.message.contains("a-full-key-value"), "{}", e.message);
    }
}
